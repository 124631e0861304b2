// Package mirror is the isolated side: it verifies a bundle and its
// approval against the pinned TUF root, pushes images and their cosign
// signatures into the target registry, and publishes the TUF repository;
// it also lists and verifies what was published.
package mirror

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/sync/errgroup"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/regsession"
	"github.com/coldharbor/coldharbor/trust"
)

// ErrOnlineKeys: an import signs a new snapshot and timestamp, so it needs
// both private keys.
var ErrOnlineKeys = errors.New("import signs a new snapshot and timestamp: it needs the snapshot and timestamp private keys")

// ErrNoBundleSignatures: the sigstore-bundle signature format was asked
// for and the approval carries only legacy cosign signatures.
var ErrNoBundleSignatures = errors.New("no sigstore-bundle signatures to push")

// ErrOtherDestination: the bundle names another registry in the cosign
// payloads its approval signs.
var ErrOtherDestination = errors.New("the bundle was exported for another registry")

// ImportOptions configure Import.
type ImportOptions struct {
	// RequireAttestation refuses targets signed by a key whose hardware
	// attestation is not recorded in the approval's ceremony/attestations.json
	// or does not verify against AttestationRoots (nil: Yubico's PIV CA).
	RequireAttestation bool
	AttestationRoots   *x509.CertPool
	Repo               string // the isolated side's TUF repository
	Registry           string // HOST[/PREFIX] of the target registry
	// SnapshotKey and TimestampKey sign the new snapshot and timestamp.
	SnapshotKey, TimestampKey *hsm.Key
	Remote                    []remote.Option
	// InsecureRegistries are the hosts ("host" or "host:port") named with
	// --insecure-registry: a Registry there is parsed with name.Insecure so
	// go-containerregistry tries plain HTTP (the transport must allow it).
	InsecureRegistries []string
	// Jobs is how many blobs upload at once. Default 4.
	Jobs     int
	Now      time.Time
	Progress func(done, total int64)
	Log      *slog.Logger
	// SignatureFormat is auto (default), legacy or bundle (refused: not
	// written yet); see ChooseSignatureFormat. Transport and Keychain are
	// how auto asks the target (default: http.DefaultTransport, anonymous).
	SignatureFormat string
	Transport       http.RoundTripper
	Keychain        authn.Keychain
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
	// BlobsExpected: blobs a differential bundle left out, found (or
	// mounted) in the registry before anything was pushed.
	BlobsExpected int `json:"blobs_expected_present,omitempty"`
	Manifests     int `json:"manifests"`
	// Signatures counts the signature manifests in place, one per
	// repository and signed digest (images and their platform manifests);
	// SignaturesPresent of them were already there with our signatures.
	Signatures int `json:"signature_manifests"`
	// Attachments pushed (referrers and cosign tags from the source); an
	// upstream .sig merged into our signature manifest is not counted.
	Attachments       int `json:"attachments"`
	SignaturesPresent int `json:"signature_manifests_present"`
	// SignatureFormat is the format written and why (--signature-format).
	SignatureFormat SignatureDecision `json:"signature_format"`
	// AlreadyImported: this approval's targets were already published; the
	// run checked the registry holds everything, put back what was missing,
	// and published nothing.
	AlreadyImported bool `json:"already_imported"`
}

// plan is everything verified before the first byte goes to the registry.
type plan struct {
	b         *bundle.Bundle
	roots     []*metadata.Metadata[metadata.RootType] // new root versions to publish
	targets   *metadata.Metadata[metadata.TargetsType]
	cosignPub []byte
	// attestations is the content of trust.AttestationsTarget when the
	// approval carries it.
	attestations []byte
	images       []imagePlan
	blobs        map[string]*blobPlan // digest → where it goes
	blobOrder    []string
	// already: these very targets are published (a rerun after success):
	// the push puts back anything missing and nothing is published.
	already bool
	// present are the blobs a differential bundle leaves out, checked in
	// the registry before anything is pushed.
	present  map[string]*presentPlan
	registry string
	insecure []string // hosts named with --insecure-registry
}

type imagePlan struct {
	img       bundle.Image
	repo      name.Repository
	manifests []manifestPush // children first, the image's own manifest last
	sigs      []*sigPush     // the image's manifest's, then each child's
	// attachments from the source, read and checked before any push.
	attachments []*attachPush
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
	st, p, pub, err := prepare(ctx, bundlePath, approvalPath, o, log, now)
	if err != nil {
		return nil, err
	}
	defer p.b.Close()
	res := &ImportResult{TargetsVersion: p.targets.Signed.Version, AlreadyImported: p.already}
	if res.SignatureFormat, err = p.signatureFormat(ctx, o); err != nil {
		return nil, err
	}
	if err := p.assignFormats(ctx, &res.SignatureFormat, append([]remote.Option{remote.WithContext(ctx)}, o.Remote...)); err != nil {
		return nil, err
	}
	log.Info("signature format", "chosen", res.SignatureFormat.Chosen, "requested", res.SignatureFormat.Requested, "bundles", res.SignatureFormat.Bundles,
		"target", res.SignatureFormat.Target, "reason", res.SignatureFormat.Reason)
	// The push runs without the repository lock: a long upload must not
	// keep refresh from renewing the timestamp.
	if err := push(ctx, p, o, log, res); err != nil {
		return nil, err
	}
	if p.already {
		log.Info("already imported", "targets", res.TargetsVersion)
		return res, nil
	}
	if pub, err = publishAfterPush(ctx, o, st, p, pub, now); err != nil {
		return nil, err
	}
	res.SnapshotVersion, res.TimestampVersion = pub.Snapshot.Signed.Version, pub.Timestamp.Signed.Version
	log.Info("published", "targets", res.TargetsVersion, "snapshot", res.SnapshotVersion, "timestamp", res.TimestampVersion)
	return res, nil
}

// prepare runs, under the repository lock, every check before the push:
// the state, the bundle and approval (steps 1–10), the online keys, and
// the publication to come, signed and verified as a client would, so that
// a bad online key or a planted file is found before the registry is
// touched. The lock is released before it returns.
func prepare(ctx context.Context, bundlePath, approvalPath string, o ImportOptions, log *slog.Logger, now time.Time) (*trust.State, *plan, *trust.Publication, error) {
	st, unlock, err := trust.LockState(ctx, o.Repo)
	if err != nil {
		return nil, nil, nil, err
	}
	defer unlock()
	// The root chain just verified is the newest trusted root from now on.
	if err := trust.UpdatePin(o.Repo, st.Root); err != nil {
		return nil, nil, nil, err
	}
	p, err := verify(ctx, st, bundlePath, approvalPath, o.Registry, now, o.InsecureRegistries...)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkOnlineKeys(st, p.roots, o); err != nil {
		p.b.Close()
		return nil, nil, nil, err
	}
	if err := checkAttested(st, p, o); err != nil {
		p.b.Close()
		return nil, nil, nil, err
	}
	log.Info("verified", "targets_version", p.targets.Signed.Version, "images", len(p.images), "blobs", len(p.blobOrder), "already_imported", p.already)
	if p.already {
		return st, p, nil, nil
	}
	pub, err := nextPublication(ctx, o, st, p, now)
	if err != nil {
		p.b.Close()
		return nil, nil, nil, err
	}
	return st, p, pub, nil
}

// publishAfterPush takes the lock again and publishes. If something was
// published while the images were pushing (a refresh, most often), the
// snapshot and timestamp are built again on top of it; if another import
// published these or newer targets meanwhile, nothing is published.
func publishAfterPush(ctx context.Context, o ImportOptions, st *trust.State, p *plan, pub *trust.Publication, now time.Time) (*trust.Publication, error) {
	cur, unlock, err := trust.LockState(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !sameVersions(st, cur) {
		if v := p.targets.Signed.Version; v <= cur.PublishedTargets {
			return nil, fmt.Errorf("targets v%d was published by another job while this import pushed (this import's targets are v%d): nothing more to publish; run the same import again to check", cur.PublishedTargets, v)
		}
		if pub, err = nextPublication(ctx, o, cur, p, now); err != nil {
			return nil, err
		}
	}
	if err := trust.Publish(ctx, o.Repo, *pub); err != nil {
		return nil, fmt.Errorf("publishing TUF metadata (images are pushed; run the same import again to finish): %w", err)
	}
	return pub, nil
}

// sameVersions reports whether two loads of a repository saw the same
// published versions.
func sameVersions(a, b *trust.State) bool {
	tsA, tsB, snA, snB := int64(0), int64(0), int64(0), int64(0)
	if a.Timestamp != nil {
		tsA = a.Timestamp.Signed.Version
	}
	if b.Timestamp != nil {
		tsB = b.Timestamp.Signed.Version
	}
	if a.Snapshot != nil {
		snA = a.Snapshot.Signed.Version
	}
	if b.Snapshot != nil {
		snB = b.Snapshot.Signed.Version
	}
	return tsA == tsB && snA == snB && a.PublishedTargets == b.PublishedTargets && a.Root.Signed.Version == b.Root.Signed.Version
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
			if sp.asBundle {
				return pushBundles(gctx, sp, ropts)
			}
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

// push writes everything the plan verified: blobs, then manifests
// (children before parents within an image), then tags, then signatures.
// Each phase waits for the one before, and within a phase images go in
// parallel, so no tag points at anything before all of it is there.
func push(ctx context.Context, p *plan, o ImportOptions, log *slog.Logger, res *ImportResult) error {
	ropts, err := regsession.Options(ctx, o.Remote)
	if err != nil {
		return err
	}
	if err := checkPresent(ctx, p, ropts, o.Jobs, res); err != nil {
		return err
	}
	if err := pushBlobs(ctx, p, ropts, o, res); err != nil {
		return err
	}
	var manifests atomic.Int64
	// Tags of one index share its manifests: each (repository, digest) is
	// put once, and an image that needs one being put waits for it, so no
	// two PUTs of the same manifest race and children still go first.
	once := &onceByKey{m: map[string]*onceCall{}}
	if err := eachImage(ctx, p.images, o.Jobs, func(ctx context.Context, ip *imagePlan) error {
		for _, m := range ip.manifests {
			err := once.do(ip.repo.String()+"@"+m.digest, func() error {
				if err := remote.Put(ip.repo.Digest(m.digest), rawManifest(m), withCtx(ctx, ropts)...); err != nil {
					return fmt.Errorf("pushing manifest %s to %s: %w", m.digest, ip.repo, err)
				}
				manifests.Add(1)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	res.Manifests = int(manifests.Load())
	if err := eachImage(ctx, p.images, o.Jobs, func(ctx context.Context, ip *imagePlan) error {
		top := ip.manifests[len(ip.manifests)-1]
		_, tag := repositoryOf(ip.img.Name)
		if err := remote.Put(ip.repo.Tag(tag), rawManifest(top), withCtx(ctx, ropts)...); err != nil {
			return fmt.Errorf("tagging %s: %w", ip.img.Name, err)
		}
		return nil
	}); err != nil {
		return err
	}
	// Signatures by tag (Harbor records a signature only when it is PUT by
	// tag), each repository and digest once, after the manifests they sign.
	if err := pushSignatures(ctx, uniqueSignatures(p.images), ropts, o, log, res); err != nil {
		return err
	}
	// Attachments after their subjects and our signatures.
	n, err := pushAttachments(ctx, p.images, ropts)
	if res.Attachments = n; err != nil {
		return err
	}
	// Publish only what the registry is seen to hold.
	if err := readBack(ctx, p.images, ropts); err != nil {
		return err
	}
	for _, ip := range p.images {
		res.Images = append(res.Images, ip.img.Name)
	}
	return nil
}

// signatureFormat asks the target about the first image's repository; a
// bundle without images writes no signatures.
func (p *plan) signatureFormat(ctx context.Context, o ImportOptions) (SignatureDecision, error) {
	if len(p.images) == 0 {
		return SignatureDecision{Requested: cmp.Or(o.SignatureFormat, SignatureFormatAuto), Chosen: SignatureFormatLegacy,
			Target: "unknown", Reason: "no images: no signatures to write"}, nil
	}
	return ChooseSignatureFormat(ctx, o.SignatureFormat, p.images[0].repo, o.Transport, o.Keychain)
}

// onceByKey runs a function at most once per key across goroutines; a
// later caller waits for the first and gets its error. No caller holds a
// key while it waits for another, so waiting cannot deadlock.
type onceByKey struct {
	mu sync.Mutex
	m  map[string]*onceCall
}

type onceCall struct {
	done chan struct{}
	err  error
}

func (o *onceByKey) do(key string, f func() error) error {
	o.mu.Lock()
	if c, ok := o.m[key]; ok {
		o.mu.Unlock()
		<-c.done
		return c.err
	}
	c := &onceCall{done: make(chan struct{})}
	o.m[key] = c
	o.mu.Unlock()
	c.err = f()
	close(c.done)
	return c.err
}
