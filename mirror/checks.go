package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/internal/regsession"
	"github.com/coldharbor/coldharbor/trust"
)

// The importer's checks, in the order and with the numbers of
// docs/bundle-format.md section 9 ("Importer"): every one runs before the
// first byte goes to the registry. Steps 1 and 2 are the format readers'
// (bundle.OpenApproval, bundle.Open); step 11 is nextPublication.

// checker carries what the steps have verified so far.
type checker struct {
	st       *trust.State
	af       *bundle.ApprovalFile
	b        *bundle.Bundle
	registry string
	insecure []string // hosts named with --insecure-registry
	now      time.Time

	root     *metadata.Metadata[metadata.RootType] // the importer's root, after the approval's rotation
	newRoots []*metadata.Metadata[metadata.RootType]
	nt       *metadata.Metadata[metadata.TargetsType] // the signed targets
	p        *plan
	already  bool // these targets are the published ones
}

// samePublished reports whether the approval's targets are, byte for byte
// once canonical, the published targets.
func (c *checker) samePublished() bool {
	if c.st.Published == nil {
		return false
	}
	a, err1 := c.st.Published.ToBytes(true)
	b, err2 := c.nt.ToBytes(true)
	return err1 == nil && err2 == nil && string(a) == string(b)
}

// verify runs steps 1–10 and returns the plan of what to push. insecure
// are the hosts named with --insecure-registry (ImportOptions).
func verify(ctx context.Context, st *trust.State, bundlePath, approvalPath, registry string, now time.Time, insecure ...string) (*plan, error) {
	c := &checker{st: st, registry: registry, insecure: insecure, now: now}
	var err error
	// 1. The approval: tar and index structure (section 4).
	if c.af, err = bundle.OpenApproval(approvalPath); err != nil {
		return nil, err
	}
	// 2. The bundle: index, head and structure (3.6), a regular file.
	if c.b, err = bundle.Open(bundlePath); err != nil {
		return nil, err
	}
	steps := []func() error{
		c.step3Binding,
		c.step4Destination,
		c.step5TargetsSigned,
		c.step6TargetsVersion,
		c.step7CosignPub,
		c.step8Targets,
		c.step9Signatures,
		func() error { return c.p.step10Manifests(ctx) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			c.b.Close()
			return nil, err
		}
	}
	return c.p, nil
}

// 3. The approval names this bundle: its index's sha256 and size.
func (c *checker) step3Binding() error {
	if c.af.Approval.Bundle != c.b.Ref() {
		return refuse(trust.WhatApproval, 0, "made for another bundle: it approves bundle index sha256 %s, this bundle's is %s", c.af.Approval.Bundle.IndexSHA256, c.b.Ref().IndexSHA256)
	}
	return nil
}

// 4. The registry is the bundle's destination (one trailing / aside): the
// signed cosign payloads name it.
func (c *checker) step4Destination() error {
	dest := c.b.Destination()
	if strings.TrimSuffix(c.registry, "/") != strings.TrimSuffix(dest, "/") {
		return &trust.VerificationError{What: trust.WhatBundle, Reason: fmt.Sprintf("exported for %s, not %s: the signed cosign payloads name %s", dest, c.registry, dest), Err: ErrOtherDestination}
	}
	return nil
}

// 5. targets.json parses and is signed by the targets threshold of the
// importer's current root — after the root versions the approval carries
// (a rotation on the signer's side, 4.5), each verified as a client
// updates to it.
func (c *checker) step5TargetsSigned() error {
	var err error
	if c.root, c.newRoots, err = c.st.AcceptRoots(c.af.Roots); err != nil {
		return err
	}
	if c.nt, err = metadata.Targets().FromBytes(c.af.Targets); err != nil {
		return refuse(trust.Targets, 0, "approval's targets.json does not parse: %v", err)
	}
	if err := c.root.VerifyDelegate(trust.Targets, c.nt); err != nil {
		ids, threshold := trust.RoleKeyIDs(c.root, trust.Targets)
		var signed []string
		for _, s := range c.nt.Signatures {
			signed = append(signed, s.KeyID)
		}
		return &trust.VerificationError{What: trust.Targets, Version: c.nt.Signed.Version, KeyIDs: signed,
			Reason: fmt.Sprintf("not signed by %d of the targets keys of root v%d (%s)%s", threshold, c.root.Signed.Version, strings.Join(shortIDs(ids), ", "), partialNote(c.root, c.nt)), Err: err}
	}
	return nil
}

// partialNote says how many signatures a partial approval (valid
// signatures, short of the threshold) still needs; "" for anything else.
func partialNote(root *metadata.Metadata[metadata.RootType], nt *metadata.Metadata[metadata.TargetsType]) string {
	st, err := trust.CheckSignatures(root, trust.Targets, nt)
	if err != nil || st.Complete() || len(st.SignedBy) == 0 {
		return ""
	}
	return fmt.Sprintf(": a partial approval, signed by %d, needs %d more signature(s) from the holders of %s", len(st.SignedBy), st.Missing, strings.Join(shortIDs(st.MaySign), ", "))
}

// 6. Its version is the approval's targets_version and above the published
// one P (rollback and replay are refused), and it has not expired.
func (c *checker) step6TargetsVersion() error {
	v := c.nt.Signed.Version
	switch {
	case v != c.af.Approval.TargetsVersion:
		return refuse(trust.Targets, v, "the approval says version %d", c.af.Approval.TargetsVersion)
	case v == c.st.PublishedTargets && c.samePublished():
		c.already = true // a rerun of a completed import: checked, pushed again, not published
	case v <= c.st.PublishedTargets:
		return refuse(trust.Targets, v, "not newer than the published targets v%d (rollback or a bundle already imported)", c.st.PublishedTargets)
	case c.nt.Signed.IsExpired(c.now):
		return &trust.VerificationError{What: trust.Targets, Version: v, Reason: "expired", Expires: c.nt.Signed.Expires}
	}
	return nil
}

// 7. cosign.pub is, byte for byte, the key file built from the importer's
// root (4.4), and the signed cosign.pub target matches it.
func (c *checker) step7CosignPub() error {
	cosignPub, err := bundle.CosignPub(c.root)
	if err != nil {
		return err
	}
	v := c.nt.Signed.Version
	if string(cosignPub) != string(c.af.CosignPub) {
		return refuse(trust.Targets, v, "the approval's cosign.pub is not root's targets keys")
	}
	if t, ok := c.nt.Signed.Targets[bundle.CosignPubTarget]; !ok || t.VerifyLengthHashes(cosignPub) != nil {
		return refuse(trust.Targets, v, "target %s does not match root's targets keys", bundle.CosignPubTarget)
	}
	c.p = &plan{b: c.b, targets: c.nt, cosignPub: cosignPub, blobs: map[string]*blobPlan{}, roots: c.newRoots, already: c.already,
		registry: c.registry, insecure: c.insecure, present: map[string]*presentPlan{}}
	// The ceremony's attestation records, when carried, match their target.
	if att := c.af.Attestations; att != nil {
		if t, ok := c.nt.Signed.Targets[trust.AttestationsTarget]; !ok || t.VerifyLengthHashes(att) != nil {
			return refuse(trust.Targets, v, "the approval's %s is not the signed target", trust.AttestationsTarget)
		}
		c.p.attestations = att
	}
	return nil
}

// 8. Every image has its signed target, bound to this bundle; every target
// bound to this bundle is in it; every other target (but cosign.pub) is
// published here unchanged.
func (c *checker) step8Targets() error {
	v, id := c.nt.Signed.Version, c.b.Ref().IndexSHA256
	inBundle := map[string]bool{}
	for _, img := range c.b.Images() {
		inBundle[img.Name] = true
		if err := trust.CheckTargetName(img.Name); err != nil {
			return refuse(trust.WhatBundle, 0, "%v", err)
		}
		t, ok := c.nt.Signed.Targets[img.Name]
		switch {
		case !ok:
			return refuse(trust.Targets, v, "image %s is in the bundle but not in the signed targets", img.Name)
		case t.Length != img.Size || "sha256:"+t.Hashes["sha256"].String() != img.Digest:
			return refuse(trust.Targets, v, "image %s: the bundle has %s (%d bytes), the signed target is sha256:%s (%d bytes)", img.Name, img.Digest, img.Size, t.Hashes["sha256"], t.Length)
		case checkSignedAttachments(img, t, v) != nil:
			// Before the binding: a bundle re-written without an
			// attachment is refused naming it (10a).
			return checkSignedAttachments(img, t, v)
		case custom(t).Bundle != id:
			return refuse(trust.Targets, v, "target %s was signed for bundle %q, not this one", img.Name, custom(t).Bundle)
		}
	}
	for n, t := range c.nt.Signed.Targets {
		if inBundle[n] || n == bundle.CosignPubTarget || (n == trust.AttestationsTarget && c.p.attestations != nil) {
			continue
		}
		if custom(t).Bundle == id {
			return refuse(trust.Targets, v, "target %s is bound to this bundle but not in it", n)
		}
		// A target from an approval that was never imported would name an
		// image this registry lacks and a file this repository cannot serve.
		var old *metadata.TargetFiles
		if c.st.Published != nil {
			old = c.st.Published.Signed.Targets[n]
		}
		if old == nil || old.Length != t.Length || !old.Hashes.Equal(t.Hashes) {
			return refuse(trust.Targets, v, "target %s is neither in this bundle nor published here (targets v%d): it comes from an approval not imported yet; import the earlier bundles first, in the order they were signed", n, c.st.PublishedTargets)
		}
	}
	return nil
}

// 9. For every image and each of its children, the payload is the one for
// its digest and at least one signature by a targets key verifies, one per
// key.
func (c *checker) step9Signatures() error {
	keys, err := targetsKeys(c.root)
	if err != nil {
		return err
	}
	dest := c.b.Destination()
	for _, img := range c.b.Images() {
		s := strings.TrimSuffix(c.registry, "/") + "/" + strings.SplitN(img.Name, ":", 2)[0]
		repo, err := name.NewRepository(s, regsession.NameOptions(c.insecure, s, name.StrictValidation)...)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.Name, err)
		}
		ip := imagePlan{img: img, repo: repo}
		if ip.sigs, err = imageSignatures(dest, c.b.PayloadBytes, c.af.Approval.Signatures, img, repo, keys); err != nil {
			return err
		}
		c.p.images = append(c.p.images, ip)
	}
	return nil
}

// 10. From each image's signed digest, every manifest is read from the
// bundle (digest-checked) and every blob it references is present with its
// size; every blob of the bundle is reached; the manifests below an index
// are exactly its signed children (3.4a).
func (p *plan) step10Manifests(ctx context.Context) error {
	w := &walker{p: p, reached: map[string]bool{}, raws: map[string][]byte{}}
	for i := range p.images {
		ip := &p.images[i]
		// Each manifest once per image: an index may list the same child
		// many times, and walking it again would multiply reads and pushes.
		w.ip, w.visited = ip, map[string]int64{}
		if err := w.walk(ctx, ip.img.Digest, types.MediaType(ip.img.MediaType), ip.img.Size, 0); err != nil {
			return err
		}
		if err := checkChildren(ip); err != nil {
			return err
		}
	}
	if err := p.step10aAttachments(w.reached); err != nil {
		return err
	}
	for d := range p.blobs {
		w.reached[d] = true
	}
	for _, d := range p.b.Blobs() {
		if !w.reached[d] {
			return refuse(trust.WhatBundle, 0, "blob %s is not referenced by any signed image", d)
		}
	}
	for _, pb := range p.b.Head.Index.Present {
		if p.present[pb.Digest] == nil {
			return refuse(trust.WhatBundle, 0, "blob %s is listed as present but no signed image needs it", pb.Digest)
		}
	}
	return nil
}

// walker reads one image's manifests from the bundle, depth first.
type walker struct {
	p       *plan
	ip      *imagePlan
	visited map[string]int64 // this image's manifests: digest → size
	reached map[string]bool  // every member reached, all images
	total   int
	// raws holds each manifest once for all images: many tags of one
	// index share its bytes, so memory follows the bundle's head, not
	// tags × manifests.
	raws map[string][]byte
}

func (w *walker) walk(ctx context.Context, digest string, mt types.MediaType, size int64, depth int) error {
	if depth > 4 {
		return refuse(trust.WhatBundle, 0, "%s: indexes nested more than 4 deep", w.ip.img.Name)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if seen, ok := w.visited[digest]; ok {
		if seen != size {
			return refuse(trust.WhatBundle, 0, "manifest %s is listed with sizes %d and %d", digest, seen, size)
		}
		return nil
	}
	w.visited[digest] = size
	if w.total++; w.total > bundle.MaxManifests {
		return refuse(trust.WhatBundle, 0, "more than %d manifests", bundle.MaxManifests)
	}
	raw, ok := w.raws[digest]
	var err error
	if !ok {
		if raw, err = w.p.b.ReadBlob(digest, bundle.MaxManifestSize); err != nil {
			return err
		}
		w.raws[digest] = raw
	}
	if int64(len(raw)) != size {
		return refuse(trust.WhatBundle, 0, "manifest %s is %d bytes, its parent says %d", digest, len(raw), size)
	}
	w.reached[digest] = true
	switch {
	case mt.IsIndex():
		err = w.index(ctx, digest, raw, depth)
	case mt.IsImage():
		err = w.image(digest, raw)
	default:
		err = refuse(trust.WhatBundle, 0, "%s: media type %s is neither an image nor an index", digest, mt)
	}
	if err != nil {
		return err
	}
	w.ip.manifests = append(w.ip.manifests, manifestPush{digest: digest, mediaType: mt, raw: raw})
	return nil
}

func (w *walker) index(ctx context.Context, digest string, raw []byte, depth int) error {
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return refuse(trust.WhatBundle, 0, "index %s: %v", digest, err)
	}
	for _, c := range im.Manifests {
		if !c.MediaType.IsIndex() && !c.MediaType.IsImage() {
			return refuse(trust.WhatBundle, 0, "index %s lists %s of media type %q: only image manifests and indexes are carried", digest, c.Digest, c.MediaType)
		}
		if err := w.walk(ctx, c.Digest.String(), c.MediaType, c.Size, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) image(digest string, raw []byte) error {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return refuse(trust.WhatBundle, 0, "manifest %s: %v", digest, err)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if err := w.p.addBlob(w.ip, d); err != nil {
			return err
		}
	}
	return nil
}

// refuse builds a refusal.
func refuse(what string, version int64, format string, a ...any) error {
	return &trust.VerificationError{What: what, Version: version, Reason: fmt.Sprintf(format, a...)}
}

func (p *plan) addBlob(ip *imagePlan, d v1.Descriptor) error {
	size, ok := p.b.HasBlob(d.Digest.String())
	if pb, present := p.b.PresentBlob(d.Digest.String()); !ok && present {
		return p.addPresent(ip, pb, d)
	}
	if !ok {
		return refuse(trust.WhatBundle, 0, "%s needs blob %s, which the bundle lacks", ip.img.Name, d.Digest)
	}
	if size != d.Size {
		return refuse(trust.WhatBundle, 0, "blob %s is %d bytes, its manifest says %d", d.Digest, size, d.Size)
	}
	bp, ok := p.blobs[d.Digest.String()]
	if !ok {
		bp = &blobPlan{digest: d.Digest.String(), size: size}
		p.blobs[bp.digest] = bp
		p.blobOrder = append(p.blobOrder, bp.digest)
	}
	for _, r := range bp.repos {
		if r == ip.repo {
			return nil
		}
	}
	bp.repos = append(bp.repos, ip.repo)
	return nil
}

func custom(t *metadata.TargetFiles) bundle.TargetCustom {
	var c bundle.TargetCustom
	if t.Custom != nil {
		_ = json.Unmarshal(*t.Custom, &c)
	}
	return c
}

func shortIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		if len(id) > 16 {
			id = id[:16]
		}
		out[i] = id
	}
	return out
}
