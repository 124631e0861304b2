// Package export is the connected side: it resolves images in their source
// registries and writes a bundle (package bundle's format) for the
// air-gapped signer, streaming blobs straight into the tar.
package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/internal/regsession"
	"github.com/coldharbor/coldharbor/trust"
)

// ImageSpec is one IMAGE argument: SRC, or SRC=REPOSITORY:TAG to rename.
type ImageSpec struct {
	Source string
	Name   string // target name; empty: the source's repository path and tag
}

// ParseImageArg reads SRC or SRC=REPOSITORY:TAG.
func ParseImageArg(s string) (ImageSpec, error) {
	src, name, renamed := strings.Cut(s, "=")
	if src == "" {
		return ImageSpec{}, fmt.Errorf("image %q: no source reference", s)
	}
	if _, err := parseRef(src, nil); err != nil {
		return ImageSpec{}, fmt.Errorf("image %q: %w", s, err)
	}
	if renamed {
		if err := bundle.ValidTargetName(name); err != nil {
			return ImageSpec{}, err
		}
	}
	return ImageSpec{Source: src, Name: name}, nil
}

// parseRef parses a source reference; a registry named in insecure (the
// --insecure-registry hosts) is reached over plain HTTP.
func parseRef(s string, insecure []string) (name.Reference, error) {
	// Strict: no silent "latest", no guessing at what was meant.
	return name.ParseReference(s, regsession.NameOptions(insecure, s, name.StrictValidation)...)
}

// ErrNothing: no image, no removal and no renewal asked for.
var ErrNothing = errors.New("nothing to export: no image, no removal, and no renewal")

// Options configure Write.
type Options struct {
	// Repo is the exporter's copy of the published TUF repository.
	Repo string
	// Destination is HOST[/PREFIX] of the target registry.
	Destination string
	Images      []ImageSpec
	Removals    []string
	// Platform, when set, keeps only that platform of a multi-arch index.
	Platform *v1.Platform
	// Remote are go-containerregistry options (auth, transport, context).
	Remote []remote.Option
	// InsecureRegistries are the hosts ("host" or "host:port") named with
	// --insecure-registry: sources there are parsed with name.Insecure so
	// go-containerregistry tries plain HTTP (the transport must allow it).
	InsecureRegistries []string
	// Progress, if set, is called with bytes written so far and the total.
	Progress func(done, total int64)
	Now      time.Time
	Tool     string
	// Renew allows a bundle with no images and no removals: signed and
	// imported, it renews the targets' expiry and changes nothing else.
	Renew bool
	// Attachments selects what the source attaches to each image that
	// travels with it: all (default, also ""), signatures or none.
	Attachments string
	// AttachmentTypes, when set, keeps only attachments whose artifact
	// type, config media type or a layer media type is one of these.
	AttachmentTypes []string
	// SignatureFormat is recorded for the signer and the importer: "" or
	// legacy (cosign payloads only), bundle or auto (the signer also signs
	// each digest's in-toto statement, so import may write sigstore bundles).
	SignatureFormat string
	// UpstreamKeys, when set, refuse an image unless a signature carried on
	// its digest (cosign .sig or sigstore bundle) verifies with one of them.
	UpstreamKeys []UpstreamKey
	// Jobs is how many blobs are fetched at once. Default 4.
	Jobs int
	// TempDir holds blobs fetched ahead of the one being written (at most
	// Jobs of them). Default: os.TempDir(); the CLI uses the bundle's folder.
	TempDir string
	// Split, when above zero, cuts the bundle into parts of at most Split
	// bytes (docs/bundle-format.md 3.7): part 0 (index, head, layout) goes
	// to Write's w, and Part makes parts 1, 2, … for the blobs; they are
	// written first, since the index lists their sha256.
	Split int64
	Part  func(n int) (io.WriteCloser, error)
	// Since, when set, is a copy of the isolated side's published
	// repository: blobs that images published there hold are left out and
	// listed as present (a differential bundle, docs/bundle-format.md 3.8).
	Since string
}

// Result summarises a written bundle.
type Result struct {
	Index       *bundle.Index `json:"index"`
	IndexSHA256 string        `json:"index_sha256"`
	Bytes       int64         `json:"bytes"`
	Blobs       int           `json:"blobs"`
	Manifests   int           `json:"manifests"`
	// SharedBlobs counts blob references satisfied by a blob already in the
	// bundle (layers images share are written once).
	SharedBlobs int `json:"shared_blobs"`
	// Present counts blobs left out of a differential bundle (Since): the
	// destination already holds them.
	Present int `json:"blobs_present,omitempty"`
	// Parts is how many files a split bundle was cut into (0: one file).
	Parts int `json:"parts,omitempty"`
	// Attachments counts the attachments carried (signatures, attestations,
	// SBOMs, other referrers), listed per image in the index.
	Attachments int `json:"attachments"`
}

type blobRef struct {
	digest v1.Hash
	size   int64
	repo   name.Repository // where to fetch it from
}

type collector struct {
	ctx       context.Context
	opts      []remote.Option
	insecure  []string // Options.InsecureRegistries
	manifests map[v1.Hash][]byte
	platforms map[v1.Hash][]string
	order     []v1.Hash // manifests, children before parents
	blobs     map[v1.Hash]*blobRef
	blobOrder []v1.Hash
	shared    int
	copies    []v1.Hash // the indexes whose copies go in the head, first reached first
	// attachmentCount counts attachments listed, over all images.
	attachmentCount int
}

// Write resolves the images, then writes the bundle to w: the index, the
// head (pending targets, the root chain, one cosign payload per image), and
// an OCI image layout with each blob once. Blobs stream from the source
// registry into the tar; memory does not grow with image size. Nothing is
// written to w until every image has resolved.
func Write(ctx context.Context, w io.Writer, o Options) (*Result, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if len(o.Images) == 0 && len(o.Removals) == 0 && !o.Renew {
		return nil, ErrNothing
	}
	if err := bundle.ValidDestination(o.Destination); err != nil {
		return nil, err
	}
	// Before any image is resolved: a reader refuses more, however long
	// the export took.
	if err := bundle.CheckLimit("images in one bundle", int64(len(o.Images)), bundle.MaxImages,
		fmt.Sprintf("export them in several bundles of at most %d images, signed and imported one after another", bundle.MaxImages)); err != nil {
		return nil, err
	}
	if err := ValidAttachments(o.Attachments); err != nil {
		return nil, err
	}
	if err := bundle.ValidSignatureFormat(o.SignatureFormat); err != nil {
		return nil, err
	}
	if len(o.UpstreamKeys) > 0 && o.Attachments == AttachNone {
		return nil, ErrUpstreamNotCarried
	}
	st, err := trust.LoadState(ctx, o.Repo)
	if err != nil {
		return nil, fmt.Errorf("reading the TUF repository %s: %w", o.Repo, err)
	}
	ropts, err := regsession.Options(ctx, o.Remote)
	if err != nil {
		return nil, err
	}
	c := &collector{ctx: ctx, opts: ropts, insecure: o.InsecureRegistries, manifests: map[v1.Hash][]byte{}, platforms: map[v1.Hash][]string{}, blobs: map[v1.Hash]*blobRef{}}
	idx := &bundle.Index{Format: bundle.BundleFormat, Tool: o.Tool, Created: now.UTC().Truncate(time.Second), Destination: o.Destination,
		Base:     bundle.Base{RootVersion: st.Root.Signed.Version, TargetsVersion: st.Targets.Signed.Version},
		Images:   []bundle.Image{},
		Removals: append([]string{}, o.Removals...), SignatureFormat: o.SignatureFormat}
	tops, err := c.resolveAll(idx, o)
	if err != nil {
		return nil, err
	}
	if err := checkRemovals(st, idx); err != nil {
		return nil, err
	}
	if o.Since != "" {
		pub, err := c.publishedBlobs(ctx, o.Since)
		if err != nil {
			return nil, err
		}
		idx.Present = c.leaveOut(pub)
	}
	head, err := headFiles(st, idx, tops, c.indexCopies(), now)
	if err != nil {
		return nil, err
	}
	idx.Members = c.listing(head)
	raw, err := encodeChecked(st, idx, head, now, o.Split)
	if err != nil {
		return nil, err
	}
	cw := &countingWriter{w: w, c: &counter{total: bundle.TarSize(raw, idx.Members), progress: o.Progress}}
	if o.Split > 0 {
		raw, err = c.writeSplit(ctx, cw, idx, raw, head, o)
	} else {
		err = c.write(ctx, cw, idx, raw, head, o)
	}
	if err != nil {
		return nil, err
	}
	sum := bundle.MemberOf(bundle.IndexName, raw)
	return &Result{Index: idx, IndexSHA256: sum.SHA256, Bytes: cw.c.n, Parts: len(idx.Parts) + min(1, len(idx.Parts)), Blobs: len(c.blobOrder), Present: len(idx.Present), Manifests: len(c.order), SharedBlobs: c.shared, Attachments: c.attachmentCount}, nil
}

// resolveAll resolves every image into idx and returns the descriptors of
// the layout's index.json, each named by its target.
func (c *collector) resolveAll(idx *bundle.Index, o Options) ([]v1.Descriptor, error) {
	seen := map[string]string{}
	var tops []v1.Descriptor
	nextPayload := len(o.Images) // children's payloads are numbered after the images'
	for i, spec := range o.Images {
		img, desc, err := c.resolve(spec, o.Platform)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[img.Name]; dup {
			return nil, fmt.Errorf("%s and %s both become %s: rename one with SRC=REPOSITORY:TAG", prev, spec.Source, img.Name)
		}
		seen[img.Name] = spec.Source
		ref, err := parseRef(spec.Source, c.insecure)
		if err != nil {
			return nil, err
		}
		top, err := v1.NewHash(img.Digest)
		if err != nil {
			return nil, err
		}
		if img.Attachments, err = c.attachments(ref.Context(), top, o); err != nil {
			return nil, fmt.Errorf("%s: %w", spec.Source, err)
		}
		if len(o.UpstreamKeys) > 0 {
			if img.Upstream, err = c.verifyUpstream(ref.Context(), img, o.UpstreamKeys); err != nil {
				return nil, err
			}
		}
		img.Payload = bundle.PayloadMember(i)
		if err := c.children(&img, &nextPayload); err != nil {
			return nil, err
		}
		idx.Images = append(idx.Images, img)
		desc.Annotations = map[string]string{"org.opencontainers.image.ref.name": img.Name}
		tops = append(tops, desc)
	}
	return tops, nil
}

// checkRemovals refuses a removal that is not a published target, or that
// the same bundle also exports.
func checkRemovals(st *trust.State, idx *bundle.Index) error {
	for _, r := range idx.Removals {
		if err := bundle.ValidTargetName(r); err != nil {
			return err
		}
		if _, ok := st.Targets.Signed.Targets[r]; !ok {
			return fmt.Errorf("cannot remove %s: no such target in targets v%d", r, st.Targets.Signed.Version)
		}
		for _, img := range idx.Images {
			if img.Name == r {
				return fmt.Errorf("%s is both exported and removed", r)
			}
		}
	}
	return nil
}

// headFiles are the small members before the blobs: the pending targets,
// the root chain, one cosign payload per image and per child of an index,
// copies of the indexes, then the OCI layout files.
func headFiles(st *trust.State, idx *bundle.Index, tops []v1.Descriptor, copies []bundle.File, now time.Time) ([]bundle.File, error) {
	pending, err := pendingTargets(st.Targets, idx, now)
	if err != nil {
		return nil, err
	}
	head := []bundle.File{{Name: bundle.PendingTargets, Data: pending}}
	versions := make([]int64, 0, len(st.RootRaw))
	for v := range st.RootRaw {
		versions = append(versions, v)
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
	for _, v := range versions {
		head = append(head, bundle.File{Name: bundle.HeadRootMember(v), Data: st.RootRaw[v]})
	}
	// The images' payloads, then their children's (numbered on).
	for _, children := range []bool{false, true} {
		for _, img := range idx.Images {
			for _, sd := range img.SignedDigests() {
				if (sd.Digest != img.Digest) != children {
					continue
				}
				p, err := bundle.DigestPayload(idx.Destination, img.Name, sd.Digest)
				if err != nil {
					return nil, err
				}
				head = append(head, bundle.File{Name: sd.Payload, Data: p})
			}
		}
	}
	head = append(head, copies...)
	layoutIdx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: tops})
	if err != nil {
		return nil, err
	}
	return append(head, bundle.File{Name: bundle.LayoutFile, Data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}, bundle.File{Name: bundle.LayoutIndex, Data: layoutIdx}), nil
}

// listing is the index's member list: head, manifests, then blobs.
func (c *collector) listing(head []bundle.File) []bundle.Member {
	var out []bundle.Member
	for _, f := range head {
		out = append(out, bundle.MemberOf(f.Name, f.Data))
	}
	for _, h := range c.order {
		out = append(out, bundle.MemberOf(bundle.BlobName(h.String()), c.manifests[h]))
	}
	for _, h := range c.blobOrder {
		out = append(out, bundle.Member{Name: bundle.BlobName(h.String()), Size: c.blobs[h].size, SHA256: h.Hex})
	}
	return out
}

// write writes the bundle in the order its index lists.
func (c *collector) write(ctx context.Context, w io.Writer, idx *bundle.Index, raw []byte, head []bundle.File, o Options) error {
	bw, err := bundle.NewWriter(w, idx, raw)
	if err != nil {
		return err
	}
	for _, f := range head {
		if err := bw.Write(f); err != nil {
			return err
		}
	}
	return c.writeBlobSection(ctx, bw, o)
}

// writeBlobSection writes the manifests, then the blobs, and ends the tar.
func (c *collector) writeBlobSection(ctx context.Context, bw *bundle.Writer, o Options) error {
	for _, h := range c.order {
		if err := bw.Write(bundle.File{Name: bundle.BlobName(h.String()), Data: c.manifests[h]}); err != nil {
			return err
		}
	}
	if err := c.writeBlobs(ctx, bw, o.TempDir, o.Jobs); err != nil {
		return err
	}
	if err := bw.Close(); err != nil {
		return fmt.Errorf("finishing the bundle: %w", err)
	}
	return nil
}

// children lists the manifests img's index reaches, each with the payload
// member it will be signed through (numbered on from *next), and records
// the indexes among them (and img's own) for copies in the head.
func (c *collector) children(img *bundle.Image, next *int) error {
	get := func(d string) ([]byte, bool) {
		h, err := v1.NewHash(d)
		if err != nil {
			return nil, false
		}
		b, ok := c.manifests[h]
		return b, ok
	}
	kids, err := bundle.Descendants(img.Digest, img.MediaType, get)
	if err != nil {
		return fmt.Errorf("%s: %w", img.Name, err)
	}
	addCopy := func(h v1.Hash) {
		if !slices.Contains(c.copies, h) {
			c.copies = append(c.copies, h)
		}
	}
	if types.MediaType(img.MediaType).IsIndex() {
		h, err := v1.NewHash(img.Digest)
		if err != nil {
			return err
		}
		addCopy(h)
	}
	for _, k := range kids {
		img.Children = append(img.Children, bundle.Child{Digest: k.Digest.String(), Payload: bundle.PayloadMember(*next)})
		*next++
		if k.MediaType.IsIndex() {
			addCopy(k.Digest)
		}
	}
	return nil
}

// indexCopies are the head members holding the recorded index copies.
func (c *collector) indexCopies() []bundle.File {
	var out []bundle.File
	for _, h := range c.copies {
		out = append(out, bundle.File{Name: bundle.IndexCopyName(h.String()), Data: c.manifests[h]})
	}
	return out
}

// resolve fetches an image's top manifest and walks everything it references.
func (c *collector) resolve(spec ImageSpec, platform *v1.Platform) (bundle.Image, v1.Descriptor, error) {
	ref, err := parseRef(spec.Source, c.insecure)
	if err != nil {
		return bundle.Image{}, v1.Descriptor{}, err
	}
	target := spec.Name
	if target == "" {
		tag, ok := ref.(name.Tag)
		if !ok {
			return bundle.Image{}, v1.Descriptor{}, fmt.Errorf("%s is a digest with no tag: name its target with %s=REPOSITORY:TAG", spec.Source, spec.Source)
		}
		target = ref.Context().RepositoryStr() + ":" + tag.TagStr()
		if err := bundle.ValidTargetName(target); err != nil {
			return bundle.Image{}, v1.Descriptor{}, err
		}
	}
	d, err := remote.Get(ref, c.opts...)
	if err != nil {
		return bundle.Image{}, v1.Descriptor{}, fmt.Errorf("resolving %s: %w", spec.Source, err)
	}
	desc := d.Descriptor
	raw := d.Manifest
	if platform != nil && desc.MediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return bundle.Image{}, v1.Descriptor{}, fmt.Errorf("%s: %w", spec.Source, err)
		}
		var child *v1.Descriptor
		for i := range im.Manifests {
			if p := im.Manifests[i].Platform; p != nil && p.Satisfies(*platform) {
				child = &im.Manifests[i]
				break
			}
		}
		if child == nil {
			return bundle.Image{}, v1.Descriptor{}, fmt.Errorf("%s has no %s image", spec.Source, platform)
		}
		cd, err := remote.Get(ref.Context().Digest(child.Digest.String()), c.opts...)
		if err != nil {
			return bundle.Image{}, v1.Descriptor{}, fmt.Errorf("resolving %s for %s: %w", spec.Source, platform, err)
		}
		desc, raw = cd.Descriptor, cd.Manifest
	}
	if desc.Size > bundle.MaxManifestSize {
		return bundle.Image{}, v1.Descriptor{}, fmt.Errorf("%s: manifest of %d bytes is over the limit of %d", spec.Source, desc.Size, bundle.MaxManifestSize)
	}
	platforms, err := c.walk(ref.Context(), desc, raw, 0)
	if err != nil {
		return bundle.Image{}, v1.Descriptor{}, fmt.Errorf("%s: %w", spec.Source, err)
	}
	return bundle.Image{
		Name: target, Source: ref.Context().String() + "@" + desc.Digest.String(),
		Digest: desc.Digest.String(), MediaType: string(desc.MediaType), Size: desc.Size, Platforms: platforms,
	}, v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}, nil
}

// walk records a manifest and, depth first, everything it references;
// children are recorded before their parents so an importer can push them
// in order.
func (c *collector) walk(repo name.Repository, desc v1.Descriptor, raw []byte, depth int) ([]string, error) {
	if depth > 4 {
		return nil, fmt.Errorf("indexes nested more than 4 deep")
	}
	if h, _, err := v1.SHA256(bytes.NewReader(raw)); err != nil || h != desc.Digest {
		return nil, fmt.Errorf("manifest %s does not match its digest", desc.Digest)
	}
	if int64(len(raw)) > bundle.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s of %d bytes is over the limit of %d", desc.Digest, len(raw), bundle.MaxManifestSize)
	}
	if _, done := c.manifests[desc.Digest]; done {
		c.shared++
		p := c.platforms[desc.Digest]
		if p == nil && depth == 0 && desc.MediaType.IsImage() {
			// First seen inside an index; as a top-level image its
			// platform comes from its config.
			m, err := v1.ParseManifest(bytes.NewReader(raw))
			if err != nil {
				return nil, err
			}
			return c.configPlatform(repo, m.Config)
		}
		return p, nil
	}
	var platforms []string
	switch {
	case desc.MediaType.IsIndex():
		im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		for _, child := range im.Manifests {
			if child.Platform != nil {
				platforms = append(platforms, child.Platform.String())
			}
			if !child.MediaType.IsIndex() && !child.MediaType.IsImage() {
				// A registry stores an index's children as manifests; one we
				// cannot parse we could not push correctly either.
				return nil, fmt.Errorf("index %s lists %s of media type %q, which coldharbor cannot carry (only image manifests and indexes)", desc.Digest, child.Digest, child.MediaType)
			}
			d, err := remote.Get(repo.Digest(child.Digest.String()), c.opts...)
			if err != nil {
				return nil, fmt.Errorf("fetching %s: %w", child.Digest, err)
			}
			if _, err := c.walk(repo, d.Descriptor, d.Manifest, depth+1); err != nil {
				return nil, err
			}
		}
	case desc.MediaType.IsImage():
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		c.addBlob(repo, m.Config)
		for _, l := range m.Layers {
			c.addBlob(repo, l)
		}
		if depth == 0 {
			if platforms, err = c.configPlatform(repo, m.Config); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("media type %s is neither an image nor an index", desc.MediaType)
	}
	c.manifests[desc.Digest] = raw
	c.platforms[desc.Digest] = platforms
	c.order = append(c.order, desc.Digest)
	if len(c.order) > bundle.MaxManifests {
		return nil, fmt.Errorf("more than %d manifests", bundle.MaxManifests)
	}
	return platforms, nil
}

func (c *collector) addBlob(repo name.Repository, d v1.Descriptor) {
	if _, ok := c.blobs[d.Digest]; ok {
		c.shared++
		return
	}
	c.blobs[d.Digest] = &blobRef{digest: d.Digest, size: d.Size, repo: repo}
	c.blobOrder = append(c.blobOrder, d.Digest)
}

// writeBlobs fetches blobs Jobs at a time into temporary files while the
// tar is written in order, so the network stays busy and memory stays flat;
// no more than Jobs fetched blobs wait on disk at once.
func (c *collector) writeBlobs(ctx context.Context, tw *bundle.Writer, tmpDir string, jobs int) error {
	if jobs <= 0 {
		jobs = 4
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type fetched struct {
		path string
		err  error
	}
	done := make([]chan fetched, len(c.blobOrder))
	for i := range done {
		done[i] = make(chan fetched, 1)
	}
	slots := make(chan struct{}, jobs)
	go func() {
		for i, h := range c.blobOrder {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				// Every channel gets exactly one value, launched or not.
				for j := i; j < len(done); j++ {
					done[j] <- fetched{err: ctx.Err()}
				}
				return
			}
			go func() {
				path, err := c.fetchBlob(ctx, c.blobs[h], tmpDir)
				done[i] <- fetched{path, err}
			}()
		}
	}()
	var failed error
	for i, h := range c.blobOrder {
		f := <-done[i] // the launcher guarantees one value per blob
		if f.err == nil && failed == nil {
			failed = c.writeFetched(tw, c.blobs[h], f.path)
		} else if failed == nil {
			failed = f.err
		}
		if f.path != "" {
			os.Remove(f.path)
		}
		if failed != nil {
			cancel()
			// Drain what is in flight so no temporary file is left behind.
			for _, ch := range done[i+1:] {
				if r := <-ch; r.path != "" {
					os.Remove(r.path)
				}
			}
			return failed
		}
		<-slots
	}
	return nil
}

// fetchBlob downloads one blob to a temporary file; ggcr verifies its
// digest as it reads, so a file that is complete is the right blob.
func (c *collector) fetchBlob(ctx context.Context, b *blobRef, tmpDir string) (string, error) {
	if b.size > bundle.MaxBlobSize {
		return "", fmt.Errorf("blob %s: %d bytes is over the limit of %d", b.digest, b.size, bundle.MaxBlobSize)
	}
	l, err := remote.Layer(b.repo.Digest(b.digest.String()), append(append([]remote.Option{}, c.opts...), remote.WithContext(ctx))...)
	if err != nil {
		return "", fmt.Errorf("fetching blob %s: %w", b.digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return "", fmt.Errorf("fetching blob %s: %w", b.digest, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(tmpDir, ".coldharbor-blob-*")
	if err != nil {
		return "", fmt.Errorf("fetching blob %s: %w", b.digest, err)
	}
	n, err := io.Copy(f, io.LimitReader(rc, b.size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != b.size {
		err = fmt.Errorf("got %d bytes, the manifest says %d", n, b.size)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("fetching blob %s: %w", b.digest, err)
	}
	return f.Name(), nil
}

func (c *collector) writeFetched(tw *bundle.Writer, b *blobRef, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return tw.Stream(bundle.BlobName(b.digest.String()), b.size, f)
}

// configPlatform reads os/architecture from an image's config blob: a
// second small fetch, worth it so the signer sees what it signs.
func (c *collector) configPlatform(repo name.Repository, cfg v1.Descriptor) ([]string, error) {
	data, err := c.smallBlob(repo, cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.Digest, err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.Digest, err)
	}
	if cf.OS == "" {
		return nil, nil
	}
	return []string{cf.Platform().String()}, nil
}

// pendingTargets builds the pending (unsigned) targets: base plus this
// bundle's images, minus its removals, version base+1.
func pendingTargets(base *metadata.Metadata[metadata.TargetsType], idx *bundle.Index, now time.Time) ([]byte, error) {
	next, err := bundle.ApplyIndex(base, idx, now, "")
	if err != nil {
		return nil, err
	}
	return next.ToBytes(true)
}

// countingWriter counts what goes through it into c, which the parts of a
// split bundle share.
type countingWriter struct {
	w io.Writer
	c *counter
}

type counter struct {
	n, total int64
	progress func(done, total int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.c.n += int64(n)
	if c.c.progress != nil {
		c.c.progress(c.c.n, c.c.total)
	}
	return n, err
}
