// Package mirror is the isolated side: it verifies a bundle and its
// approval against the pinned TUF root, pushes images and their cosign
// signatures into the target registry, and publishes the TUF repository;
// it also lists and verifies what was published.
package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/sync/errgroup"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// ErrOnlineKeys: an import signs a new snapshot and timestamp, so it needs
// both private keys.
var ErrOnlineKeys = errors.New("import signs a new snapshot and timestamp: it needs the snapshot and timestamp private keys")

// ErrOtherDestination: the bundle names another registry in the cosign
// payloads its approval signs.
var ErrOtherDestination = errors.New("the bundle was exported for another registry")

// ImportOptions configure Import.
type ImportOptions struct {
	Repo     string // the isolated side's TUF repository
	Registry string // HOST[/PREFIX] of the target registry
	// SnapshotKey and TimestampKey sign the new snapshot and timestamp.
	SnapshotKey, TimestampKey *hsm.Key
	Remote                    []remote.Option
	// Jobs is how many blobs upload at once. Default 4.
	Jobs     int
	Now      time.Time
	Progress func(done, total int64)
	Log      *slog.Logger
}

// ImportResult reports what an import did.
type ImportResult struct {
	TargetsVersion   int64    `json:"targets_version"`
	SnapshotVersion  int64    `json:"snapshot_version"`
	TimestampVersion int64    `json:"timestamp_version"`
	Images           []string `json:"images"`
	BlobsPushed      int      `json:"blobs_pushed"`
	BlobsSkipped     int      `json:"blobs_present"`
	// BlobsMounted: blobs another repository of this import already had,
	// mounted (or found) rather than uploaded again.
	BlobsMounted int   `json:"blobs_mounted"`
	BytesPushed  int64 `json:"bytes_pushed"`
	Manifests    int   `json:"manifests"`
	// Signatures counts the signature manifests in place, one per
	// repository and signed digest (images and their platform manifests);
	// SignaturesPresent of them were already there with our signatures.
	Signatures        int `json:"signature_manifests"`
	SignaturesPresent int `json:"signature_manifests_present"`
}

// plan is everything verified before the first byte goes to the registry.
type plan struct {
	b         *bundle.Bundle
	roots     []*metadata.Metadata[metadata.RootType] // new root versions to publish
	targets   *metadata.Metadata[metadata.TargetsType]
	cosignPub []byte
	images    []imagePlan
	blobs     map[string]*blobPlan // digest → where it goes
	blobOrder []string
}

type imagePlan struct {
	img       bundle.Image
	repo      name.Repository
	manifests []manifestPush // children first, the image's own manifest last
	sigs      []*sigPush     // the image's manifest's, then each child's
}

type manifestPush struct {
	digest    string
	mediaType types.MediaType
	raw       []byte
}

type blobPlan struct {
	digest string
	size   int64
	repos  []name.Repository
}

// Import verifies bundle and approval and then pushes and publishes. The
// order is what makes a refusal safe: the approval, its binding to this
// bundle, the signed targets and the cosign signatures are verified, and
// every manifest is read and checked against the signed digests, before
// anything is uploaded; blobs are verified as they stream; manifests and
// tags are pushed only once every blob has verified; TUF is published last.
// A refused import exposes no manifest or tag and publishes nothing.
func Import(ctx context.Context, bundlePath, approvalPath string, o ImportOptions) (*ImportResult, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Jobs <= 0 {
		o.Jobs = 4
	}
	if o.SnapshotKey == nil || !o.SnapshotKey.Private() || o.TimestampKey == nil || !o.TimestampKey.Private() {
		return nil, ErrOnlineKeys
	}
	unlock, err := trust.Lock(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := trust.LoadState(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	// The root chain just verified is the newest trusted root from now on.
	if err := trust.UpdatePin(o.Repo, st.Root); err != nil {
		return nil, err
	}
	p, err := verify(ctx, st, bundlePath, approvalPath, o.Registry, now)
	if err != nil {
		return nil, err
	}
	defer p.b.Close()
	log.Info("verified", "targets_version", p.targets.Signed.Version, "images", len(p.images), "blobs", len(p.blobOrder))

	// Sign the new snapshot and timestamp and verify the whole repository
	// as a client would before touching the registry: a bad online key is
	// found now, not after the push.
	pub, err := nextPublication(ctx, o, st, p, now)
	if err != nil {
		return nil, err
	}

	res := &ImportResult{TargetsVersion: p.targets.Signed.Version, SnapshotVersion: pub.Snapshot.Signed.Version, TimestampVersion: pub.Timestamp.Signed.Version}
	ropts := append([]remote.Option{remote.WithContext(ctx)}, o.Remote...)
	if err := pushBlobs(ctx, p, ropts, o, res); err != nil {
		return nil, err
	}
	// Manifests (children before parents within an image), then tags,
	// then signatures: each phase waits for the one before, and within a
	// phase images go in parallel.
	var manifests atomic.Int64
	if err := eachImage(ctx, p.images, o.Jobs, func(ctx context.Context, ip *imagePlan) error {
		for _, m := range ip.manifests {
			if err := remote.Put(ip.repo.Digest(m.digest), rawManifest(m), withCtx(ctx, ropts)...); err != nil {
				return fmt.Errorf("pushing manifest %s to %s: %w", m.digest, ip.repo, err)
			}
			manifests.Add(1)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	res.Manifests = int(manifests.Load())
	// Tags last: until now no tag points at anything new.
	if err := eachImage(ctx, p.images, o.Jobs, func(ctx context.Context, ip *imagePlan) error {
		top := ip.manifests[len(ip.manifests)-1]
		_, tag := repositoryOf(ip.img.Name)
		if err := remote.Put(ip.repo.Tag(tag), rawManifest(top), withCtx(ctx, ropts)...); err != nil {
			return fmt.Errorf("tagging %s: %w", ip.img.Name, err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	// Signatures by tag (Harbor records a signature only when it is PUT by
	// tag), each repository and digest once, after the manifests they sign.
	if err := pushSignatures(ctx, uniqueSignatures(p.images), ropts, o, log, res); err != nil {
		return nil, err
	}
	for _, ip := range p.images {
		res.Images = append(res.Images, ip.img.Name)
	}
	if err := trust.Publish(ctx, o.Repo, *pub); err != nil {
		return nil, fmt.Errorf("publishing TUF metadata (images are pushed; run the same import again to finish): %w", err)
	}
	log.Info("published", "targets", res.TargetsVersion, "snapshot", res.SnapshotVersion, "timestamp", res.TimestampVersion)
	return res, nil
}

func refuse(role string, version int64, format string, a ...any) error {
	return &trust.VerificationError{What: role, Version: version, Reason: fmt.Sprintf(format, a...)}
}

// verify does every check that needs no blob, then reads the manifests.
func verify(ctx context.Context, st *trust.State, bundlePath, approvalPath, registry string, now time.Time) (*plan, error) {
	af, err := readApproval(approvalPath)
	if err != nil {
		return nil, err
	}
	b, err := bundle.Open(bundlePath)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	if af.Approval.Bundle != b.Ref() {
		return nil, refuse(trust.WhatApproval, 0, "made for another bundle: it approves bundle index sha256 %s, this bundle's is %s", af.Approval.Bundle.IndexSHA256, b.Ref().IndexSHA256)
	}
	dest := b.Destination()
	if strings.TrimSuffix(registry, "/") != strings.TrimSuffix(dest, "/") {
		return nil, &trust.VerificationError{What: trust.WhatBundle, Reason: fmt.Sprintf("exported for %s, not %s: the signed cosign payloads name %s", dest, registry, dest), Err: ErrOtherDestination}
	}
	// Root versions the approval carries (a rotation on the signer's side):
	// each verified as a client updates to it, by the trusted root's
	// threshold and its own; from here on the newest is the root.
	root, newRoots, err := st.AcceptRoots(af.Roots)
	if err != nil {
		return nil, err
	}
	// The signed targets, against that root.
	nt, err := metadata.Targets().FromBytes(af.Targets)
	if err != nil {
		return nil, refuse(trust.Targets, 0, "approval's targets.json does not parse: %v", err)
	}
	v := nt.Signed.Version
	if err := root.VerifyDelegate(trust.Targets, nt); err != nil {
		ids, threshold := trust.RoleKeyIDs(root, trust.Targets)
		var signed []string
		for _, s := range nt.Signatures {
			signed = append(signed, s.KeyID)
		}
		return nil, &trust.VerificationError{What: trust.Targets, Version: v, KeyIDs: signed,
			Reason: fmt.Sprintf("not signed by %d of the targets keys of root v%d (%s)", threshold, root.Signed.Version, strings.Join(shortIDs(ids), ", ")), Err: err}
	}
	if v != af.Approval.TargetsVersion {
		return nil, refuse(trust.Targets, v, "the approval says version %d", af.Approval.TargetsVersion)
	}
	if v <= st.PublishedTargets {
		return nil, refuse(trust.Targets, v, "not newer than the published targets v%d (rollback or a bundle already imported)", st.PublishedTargets)
	}
	if nt.Signed.IsExpired(now) {
		return nil, &trust.VerificationError{What: trust.Targets, Version: v, Reason: "expired", Expires: nt.Signed.Expires}
	}
	cosignPub, err := bundle.CosignPub(root)
	if err != nil {
		return nil, err
	}
	if string(cosignPub) != string(af.CosignPub) {
		return nil, refuse(trust.Targets, v, "the approval's cosign.pub is not root's targets keys")
	}
	if t, ok := nt.Signed.Targets[bundle.CosignPubTarget]; !ok || t.VerifyLengthHashes(cosignPub) != nil {
		return nil, refuse(trust.Targets, v, "target %s does not match root's targets keys", bundle.CosignPubTarget)
	}
	// Every image against its signed target, and every target bound to
	// this bundle present in it.
	p := &plan{b: b, targets: nt, cosignPub: cosignPub, blobs: map[string]*blobPlan{}, roots: newRoots}
	inBundle := map[string]bool{}
	for _, img := range b.Images() {
		inBundle[img.Name] = true
		if err := trust.CheckTargetName(img.Name); err != nil {
			return nil, refuse(trust.WhatBundle, 0, "%v", err)
		}
		t, ok := nt.Signed.Targets[img.Name]
		if !ok {
			return nil, refuse(trust.Targets, v, "image %s is in the bundle but not in the signed targets", img.Name)
		}
		if t.Length != img.Size || "sha256:"+t.Hashes["sha256"].String() != img.Digest {
			return nil, refuse(trust.Targets, v, "image %s: the bundle has %s (%d bytes), the signed target is sha256:%s (%d bytes)", img.Name, img.Digest, img.Size, t.Hashes["sha256"], t.Length)
		}
		if custom(t).Bundle != b.Ref().IndexSHA256 {
			return nil, refuse(trust.Targets, v, "target %s was signed for bundle %q, not this one", img.Name, custom(t).Bundle)
		}
	}
	// Every other target must already be published here, unchanged: a
	// target from an approval that was never imported would name an image
	// this registry lacks and a file this repository cannot serve.
	for n, t := range nt.Signed.Targets {
		if inBundle[n] || n == bundle.CosignPubTarget {
			continue
		}
		if custom(t).Bundle == b.Ref().IndexSHA256 {
			return nil, refuse(trust.Targets, v, "target %s is bound to this bundle but not in it", n)
		}
		var old *metadata.TargetFiles
		if st.Published != nil {
			old = st.Published.Signed.Targets[n]
		}
		if old == nil || old.Length != t.Length || !old.Hashes.Equal(t.Hashes) {
			return nil, refuse(trust.Targets, v, "target %s is neither in this bundle nor published here (targets v%d): it comes from an approval not imported yet; import the earlier bundles first, in the order they were signed", n, st.PublishedTargets)
		}
	}
	// Cosign signatures: each image needs one by a targets key, over the
	// payload the bundle carries (hash-checked against the index).
	keys, err := targetsKeys(root)
	if err != nil {
		return nil, err
	}
	for _, img := range b.Images() {
		repo, err := name.NewRepository(strings.TrimSuffix(registry, "/")+"/"+strings.SplitN(img.Name, ":", 2)[0], name.StrictValidation)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img.Name, err)
		}
		ip := imagePlan{img: img, repo: repo}
		if ip.sigs, err = imageSignatures(dest, b.PayloadBytes, af.Approval.Signatures, img, repo, keys); err != nil {
			return nil, err
		}
		p.images = append(p.images, ip)
	}
	if err := p.readManifests(ctx); err != nil {
		return nil, err
	}
	ok = true
	return p, nil
}

// readManifests walks each image from its signed digest, reading every
// manifest from the bundle (digest-checked), and works out which blobs go to
// which repository. A blob the walk does not reach, or one it reaches that
// the bundle lacks or sizes differently, is refused.
func (p *plan) readManifests(ctx context.Context) error {
	reached := map[string]bool{}
	total := 0
	for i := range p.images {
		ip := &p.images[i]
		// Each manifest once per image: an index may list the same child
		// many times, and walking it again would multiply reads and pushes.
		visited := map[string]int64{} // digest → size
		var walk func(digest string, mt types.MediaType, size int64, depth int) error
		walk = func(digest string, mt types.MediaType, size int64, depth int) error {
			if depth > 4 {
				return refuse(trust.WhatBundle, 0, "%s: indexes nested more than 4 deep", ip.img.Name)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if seen, ok := visited[digest]; ok {
				if seen != size {
					return refuse(trust.WhatBundle, 0, "manifest %s is listed with sizes %d and %d", digest, seen, size)
				}
				return nil
			}
			visited[digest] = size
			if total++; total > bundle.MaxManifests {
				return refuse(trust.WhatBundle, 0, "more than %d manifests", bundle.MaxManifests)
			}
			raw, err := p.b.ReadBlob(digest, bundle.MaxManifestSize)
			if err != nil {
				return err
			}
			if int64(len(raw)) != size {
				return refuse(trust.WhatBundle, 0, "manifest %s is %d bytes, its parent says %d", digest, len(raw), size)
			}
			reached[digest] = true
			switch {
			case mt.IsIndex():
				im, err := v1.ParseIndexManifest(strings.NewReader(string(raw)))
				if err != nil {
					return refuse(trust.WhatBundle, 0, "index %s: %v", digest, err)
				}
				for _, c := range im.Manifests {
					if !c.MediaType.IsIndex() && !c.MediaType.IsImage() {
						return refuse(trust.WhatBundle, 0, "index %s lists %s of media type %q: only image manifests and indexes are carried", digest, c.Digest, c.MediaType)
					}
					if err := walk(c.Digest.String(), c.MediaType, c.Size, depth+1); err != nil {
						return err
					}
				}
			case mt.IsImage():
				m, err := v1.ParseManifest(strings.NewReader(string(raw)))
				if err != nil {
					return refuse(trust.WhatBundle, 0, "manifest %s: %v", digest, err)
				}
				for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
					if err := p.addBlob(ip, d); err != nil {
						return err
					}
				}
			default:
				return refuse(trust.WhatBundle, 0, "%s: media type %s is neither an image nor an index", digest, mt)
			}
			ip.manifests = append(ip.manifests, manifestPush{digest: digest, mediaType: mt, raw: raw})
			return nil
		}
		if err := walk(ip.img.Digest, types.MediaType(ip.img.MediaType), ip.img.Size, 0); err != nil {
			return err
		}
		if err := checkChildren(ip); err != nil {
			return err
		}
	}
	for d := range p.blobs {
		reached[d] = true
	}
	for _, d := range p.b.Blobs() {
		if !reached[d] {
			return refuse(trust.WhatBundle, 0, "blob %s is not referenced by any signed image", d)
		}
	}
	return nil
}

func (p *plan) addBlob(ip *imagePlan, d v1.Descriptor) error {
	size, ok := p.b.HasBlob(d.Digest.String())
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

// pushBlobs uploads every blob to every repository that needs it, Jobs at
// a time, streaming from the bundle and verifying the digest as it goes.
// Blobs the registry already has are skipped (ggcr checks with HEAD).
func pushBlobs(ctx context.Context, p *plan, ropts []remote.Option, o ImportOptions, res *ImportResult) error {
	var total, done atomic.Int64
	for _, d := range p.blobOrder {
		total.Add(p.blobs[d].size * int64(len(p.blobs[d].repos)))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Jobs)
	var pushed, skipped, mounted, bytes atomic.Int64
	for _, d := range p.blobOrder {
		bp := p.blobs[d]
		// One job per blob: its first repository gets the upload; the others
		// ask the registry to mount it from there (OCI distribution spec,
		// cross-repository blob mount) and fall back to uploading.
		g.Go(func() error {
			for i, repo := range bp.repos {
				l := &bundleLayer{b: p.b, digest: bp.digest, size: bp.size}
				var layer v1.Layer = l
				if i > 0 {
					layer = &remote.MountableLayer{Layer: l, Reference: bp.repos[0].Digest(bp.digest)}
				}
				if err := remote.WriteLayer(repo, layer, withCtx(gctx, ropts)...); err != nil {
					var de *bundle.DigestError
					if errors.As(err, &de) {
						return &trust.VerificationError{What: trust.WhatBundle, Reason: "blob does not match its digest (nothing was tagged)", Err: de}
					}
					return fmt.Errorf("uploading blob %s to %s: %w", bp.digest, repo, err)
				}
				switch {
				case l.opened.Load():
					pushed.Add(1)
					bytes.Add(bp.size)
				case i > 0:
					mounted.Add(1)
				default:
					skipped.Add(1)
				}
				if o.Progress != nil {
					o.Progress(done.Add(bp.size), total.Load())
				}
			}
			return nil
		})
	}
	err := g.Wait()
	res.BlobsPushed, res.BlobsSkipped, res.BlobsMounted, res.BytesPushed = int(pushed.Load()), int(skipped.Load()), int(mounted.Load()), bytes.Load()
	return err
}

// bundleLayer is a v1.Layer over a bundle member; ggcr only needs the
// compressed form, digest, size and media type to upload a blob.
type bundleLayer struct {
	b      *bundle.Bundle
	digest string
	size   int64
	opened atomic.Bool
}

func (l *bundleLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.digest) }
func (l *bundleLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{}, errors.New("a bundle blob has no diff ID: only its compressed form travels")
}
func (l *bundleLayer) Compressed() (io.ReadCloser, error) {
	l.opened.Store(true)
	rc, _, err := l.b.BlobReader(l.digest)
	return rc, err
}
func (l *bundleLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("a bundle blob is pushed as it is, never uncompressed")
}
func (l *bundleLayer) Size() (int64, error)                { return l.size, nil }
func (l *bundleLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

type rawManifestT struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifestT) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifestT) MediaType() (types.MediaType, error) { return r.mt, nil }

func rawManifest(m manifestPush) remote.Taggable { return rawManifestT{m.raw, m.mediaType} }

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

// eachImage runs f for every image, jobs at a time, stopping at the first error.
func eachImage(ctx context.Context, images []imagePlan, jobs int, f func(context.Context, *imagePlan) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i := range images {
		ip := &images[i]
		g.Go(func() error { return f(gctx, ip) })
	}
	return g.Wait()
}

func withCtx(ctx context.Context, opts []remote.Option) []remote.Option {
	return append(append([]remote.Option{}, opts...), remote.WithContext(ctx))
}

// pushSignatures writes the signature manifests, Jobs at a time.
func pushSignatures(ctx context.Context, sigs []*sigPush, ropts []remote.Option, o ImportOptions, log *slog.Logger, res *ImportResult) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Jobs)
	var present atomic.Int64
	for _, sp := range sigs {
		g.Go(func() error {
			wrote, err := pushSignature(gctx, sp, ropts, log)
			if err == nil && !wrote {
				present.Add(1)
			}
			return err
		})
	}
	err := g.Wait()
	res.Signatures, res.SignaturesPresent = len(sigs), int(present.Load())
	return err
}
