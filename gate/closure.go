package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// attachmentSuffixes are the tags cosign stores a digest's signatures,
// attestations and SBOMs under: sha256-<hex>.<suffix>.
var attachmentSuffixes = []string{"sig", "att", "sbom"}

// Bounds on one repository's closure: how many manifests it may hold, and
// how many upstream look-ups run at once while building it.
const (
	maxClosureManifests = 4096
	closureJobs         = 8
)

// closure is what one repository may answer, as of when it was built:
// every manifest reachable from a trusted target (children, attachments)
// and every blob those reference, with the size their descriptor gives.
type closure struct {
	built     time.Time
	manifests map[v1.Hash]allowed
	blobs     map[v1.Hash]int64
	// sigBlobs are the blobs of cosign signature manifests that the signed
	// targets do not list (ours, merged at import, is one): upstream chose
	// them, so each is served only as the small JSON a signature holds,
	// never as a layer a runtime could unpack, and never over the size a
	// trusted manifest gives the same digest.
	sigBlobs map[v1.Hash]int64
	// refused are trusted targets the gate will not serve, and why (lost
	// upstream, no valid signature with --require-signature).
	refused map[v1.Hash]string
	// referrers are the OCI 1.1 referrers the closure admits, by the
	// trusted digest (target or platform) they refer to: what the gate's
	// referrers API lists.
	referrers map[v1.Hash][]v1.Descriptor
}

// allowed says why a manifest may be served.
type allowed struct {
	size       int64  // 0: unknown (an attachment found by tag)
	why        string // "target app:1", "child of app:1", "signature of app:1"
	attachment bool   // found under a cosign tag of a trusted digest
}

// descriptor and parsed are the fields of OCI and Docker manifests and
// indexes the gate follows.
type descriptor struct {
	MediaType string  `json:"mediaType"`
	Digest    v1.Hash `json:"digest"`
	Size      int64   `json:"size"`
}

type parsed struct {
	MediaType string       `json:"mediaType"`
	Manifests []descriptor `json:"manifests"`
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
}

func parseManifest(raw []byte) (*parsed, error) {
	var p parsed
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("not a manifest: %w", err)
	}
	return &p, nil
}

// closureFor returns repo's closure, building it when missing or older
// than maxAge.
func (g *Gate) closureFor(ctx context.Context, st *state, repo string, maxAge time.Duration) (*closure, error) {
	st.mu.Lock()
	c := st.closures[repo]
	if c != nil && g.cfg.Now().Sub(c.built) < maxAge {
		st.mu.Unlock()
		return c, nil
	}
	st.mu.Unlock()
	// One look-up per repository at a time: the clients that ask meanwhile
	// share its result instead of each walking the upstream again.
	v, err, _ := st.flight.Do(repo, func() (any, error) {
		c, err := g.buildClosure(ctx, st, repo)
		if err != nil {
			return nil, err
		}
		st.mu.Lock()
		if len(st.closures) >= maxRepos {
			clear(st.closures)
		}
		st.closures[repo] = c
		st.mu.Unlock()
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*closure), nil
}

// builder collects a closure from parallel look-ups.
type builder struct {
	mu sync.Mutex
	c  *closure
}

func (b *builder) addManifest(d v1.Hash, a allowed, p *parsed) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.c.manifests) >= maxClosureManifests {
		return fmt.Errorf("more than %d manifests reachable: refused", maxClosureManifests)
	}
	if _, ok := b.c.manifests[d]; !ok {
		b.c.manifests[d] = a
	}
	if p == nil {
		return nil
	}
	if p.Config != nil {
		b.c.blobs[p.Config.Digest] = p.Config.Size
	}
	for _, l := range p.Layers {
		b.c.blobs[l.Digest] = l.Size
	}
	return nil
}

// addSignature adds an unlisted cosign signature manifest: its blobs go to
// sigBlobs only.
func (b *builder) addSignature(d v1.Hash, a allowed, p *parsed) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.c.manifests) >= maxClosureManifests {
		return fmt.Errorf("more than %d manifests reachable: refused", maxClosureManifests)
	}
	if _, ok := b.c.manifests[d]; !ok {
		b.c.manifests[d] = a
	}
	b.c.sigBlobs[p.Config.Digest] = p.Config.Size
	for _, l := range p.Layers {
		b.c.sigBlobs[l.Digest] = l.Size
	}
	return nil
}

// blob returns the size a blob may be served with, and whether it must be
// served as a signature's small JSON (sigBlobs); trusted manifests win.
func (c *closure) blob(d v1.Hash) (size int64, small, ok bool) {
	if size, ok := c.blobs[d]; ok {
		return size, false, true
	}
	if size, ok := c.sigBlobs[d]; ok {
		return size, true, true
	}
	return 0, false, false
}

func (b *builder) refuse(d v1.Hash, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.c.refused[d] = why
}

// buildClosure walks every trusted target of repo upstream: its manifest
// (by digest, hashed), an index's children, and the cosign attachments of
// each; with --require-signature a target whose signature does not verify
// is refused with its children.
func (g *Gate) buildClosure(ctx context.Context, st *state, repo string) (*closure, error) {
	b := &builder{c: &closure{built: g.cfg.Now(), manifests: map[v1.Hash]allowed{}, blobs: map[v1.Hash]int64{}, sigBlobs: map[v1.Hash]int64{}, refused: map[v1.Hash]string{}, referrers: map[v1.Hash][]v1.Descriptor{}}}
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(closureJobs)
	for _, t := range st.repos[repo] {
		eg.Go(func() error { return g.walkTarget(ctx, st, b, repo, t) })
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	return b.c, nil
}

func (g *Gate) walkTarget(ctx context.Context, st *state, b *builder, repo string, t target) error {
	m, err := g.up.fetchManifest(ctx, repo, "", t.digest, t.size)
	if err != nil {
		if why := targetFailure(t, err); why != "" {
			b.refuse(t.digest, why)
			return nil
		}
		return err // upstream unreachable: a 502 now, a new look-up next time
	}
	if int64(len(m.raw)) != t.size {
		b.refuse(t.digest, fmt.Sprintf("the upstream manifest %s of %s is %d bytes, the target says %d", t.digest, t.name, len(m.raw), t.size))
		return nil
	}
	if st.keys != nil {
		if why := g.checkSignature(ctx, st, repo, t); why != "" {
			b.refuse(t.digest, why)
			return nil
		}
	}
	p, err := parseManifest(m.raw)
	if err != nil {
		b.refuse(t.digest, fmt.Sprintf("the trusted manifest %s of %s: %v", t.digest, t.name, err))
		return nil
	}
	if err := b.addManifest(t.digest, allowed{size: t.size, why: "target " + t.name}, p); err != nil {
		return err
	}
	digests := []v1.Hash{t.digest}
	for _, child := range p.Manifests {
		cm, err := g.up.fetchManifest(ctx, repo, "", child.Digest, child.Size)
		if err != nil {
			g.log.Warn("child manifest of a trusted index", "target", t.name, "digest", child.Digest, "err", err)
			continue
		}
		cp, err := parseManifest(cm.raw)
		if err != nil {
			continue
		}
		if err := b.addManifest(child.Digest, allowed{size: child.Size, why: "a platform of " + t.name}, cp); err != nil {
			return err
		}
		digests = append(digests, child.Digest)
	}
	for _, d := range digests {
		if err := g.walkAttachments(ctx, b, repo, t, d); err != nil {
			return err
		}
		if err := g.walkReferrers(ctx, b, repo, t, d); err != nil {
			return err
		}
	}
	return nil
}

// maxReferrers bounds the referrers of one digest the gate follows.
const maxReferrers = 64

// walkReferrers adds the OCI 1.1 referrers of d that upstream lists
// (upstream.referrers: the referrers API, or the fallback tag sha256-<hex>),
// with each referrer manifest, read by digest, and its blobs, and records
// them for the gate's referrers API. As with cosign tags
// (walkAttachments), upstream chooses what it lists, so a referrer is
// admitted only when the signed target lists it, or as a sigstore bundle
// signature whose blobs are served as small JSON only. Of the list itself
// only the fallback tag's manifest is admitted: the API's index is
// generated, not content-addressed.
func (g *Gate) walkReferrers(ctx context.Context, b *builder, repo string, t target, d v1.Hash) error {
	list, err := g.up.referrers(ctx, repo, d)
	if err != nil {
		b.setReferrers(d, nil)
		return nil // none, or unreadable: not served
	}
	if list.tagged != nil {
		if err := b.addManifest(list.tagged.digest, allowed{why: "referrers index (attachment) of " + t.name, attachment: true}, nil); err != nil {
			return err
		}
	}
	var served []v1.Descriptor
	for i, r := range list.index.Manifests {
		if i >= maxReferrers {
			break
		}
		rm, err := g.up.fetchManifest(ctx, repo, "", r.Digest, r.Size)
		if err != nil {
			continue
		}
		rp, err := parseManifest(rm.raw)
		if err != nil || len(rp.Manifests) > 0 {
			continue
		}
		a := allowed{size: r.Size, why: "a referrer (attachment) of " + t.name, attachment: true}
		size, listed := t.attached[r.Digest]
		switch {
		case listed && size == r.Size:
			err = b.addManifest(r.Digest, a, rp)
		case signatureShaped(rp, isSigstoreBundle):
			err = b.addSignature(r.Digest, a, rp)
		default:
			g.log.Info("referrer not served: the signed target does not list it and it is not a sigstore bundle",
				"target", t.name, "digest", r.Digest)
			continue
		}
		if err != nil {
			return err
		}
		if desc, ok := referrerDescriptor(d, r, rm); ok {
			served = append(served, desc)
		}
	}
	b.setReferrers(d, served)
	return nil
}

// walkAttachments adds the cosign signature, attestation and SBOM
// manifests of d that upstream has, with their blobs. Upstream chooses what
// it puts under those tags, so only two kinds are admitted: an attachment
// the signed target lists (custom.attachments, by digest and size), and a
// cosign signature manifest (simple-signing layers only), whose blobs are
// served as small JSON only. Anything else (an image pushed under
// sha256-<trusted>.sig) would make an untrusted image pullable by digest.
func (g *Gate) walkAttachments(ctx context.Context, b *builder, repo string, t target, d v1.Hash) error {
	for _, suffix := range attachmentSuffixes {
		m, err := g.up.fetchManifest(ctx, repo, attachmentTag(d, suffix), v1.Hash{}, 0)
		if err != nil {
			continue // none, or unreadable: not served
		}
		p, err := parseManifest(m.raw)
		if err != nil || len(p.Manifests) > 0 {
			continue // attachments are image manifests
		}
		a := allowed{why: suffix + " attachment of " + t.name, attachment: true}
		size, listed := t.attached[m.digest]
		switch {
		case listed && size == int64(len(m.raw)):
			a.size = size
			err = b.addManifest(m.digest, a, p)
		case suffix == "sig" && signatureShaped(p, isSimpleSigning):
			err = b.addSignature(m.digest, a, p)
		default:
			g.log.Info("attachment not served: the signed target does not list it and it is not a cosign signature",
				"target", t.name, "tag", attachmentTag(d, suffix), "digest", m.digest)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// signatureShaped reports whether p is a signature manifest: a small config
// and 1 to maxSignatureLayers small layers, each of a type layerType
// accepts (cosign's simple-signing payload, or a sigstore bundle).
func signatureShaped(p *parsed, layerType func(string) bool) bool {
	if p.Config == nil || p.Config.Size <= 0 || p.Config.Size > maxPayloadSize ||
		len(p.Layers) == 0 || len(p.Layers) > maxSignatureLayers {
		return false
	}
	for _, l := range p.Layers {
		if !layerType(l.MediaType) || l.Size <= 0 || l.Size > maxPayloadSize {
			return false
		}
	}
	return true
}

func isSimpleSigning(mt string) bool { return mt == simpleSigningMediaType }

// isSigstoreBundle: cosign v3's signatures (and ours with import
// --signature-format bundle), application/vnd.dev.sigstore.bundle.v0.3+json.
func isSigstoreBundle(mt string) bool {
	return strings.HasPrefix(mt, "application/vnd.dev.sigstore.bundle.") && strings.HasSuffix(mt, "+json")
}

// attachmentTag is cosign's tag for d's attachments, sha256-<hex>.<suffix>,
// or with no suffix the referrers fallback tag, sha256-<hex>.
func attachmentTag(d v1.Hash, suffix string) string {
	if suffix == "" {
		return d.Algorithm + "-" + d.Hex
	}
	return d.Algorithm + "-" + d.Hex + "." + suffix
}

// targetFailure says why a trusted target cannot be served when upstream
// lost or altered it, and "" for other failures (upstream unreachable). The
// closure and a request answer with the same words, so replicas agree.
func targetFailure(t target, err error) string {
	var (
		de *digestError
		se *sizeError
	)
	switch {
	case errors.Is(err, errNotFound):
		return fmt.Sprintf("the trusted digest %s of %s is not in the upstream registry (deleted or replaced there)", t.digest, t.name)
	case errors.As(err, &de):
		return fmt.Sprintf("the upstream registry answered %s for the trusted digest %s of %s: refused", de.got, t.digest, t.name)
	case errors.As(err, &se):
		return fmt.Sprintf("the upstream registry answered more than the %d bytes the trusted manifest %s of %s is: refused", t.size, t.digest, t.name)
	}
	return ""
}
