package export

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/coldharbor/coldharbor/bundle"
)

// Attachment selections (--attachments).
const (
	AttachAll        = "all"
	AttachSignatures = "signatures"
	AttachNone       = "none"
)

// ErrAttachments: the source attaches what a bundle cannot carry (too many,
// or not image manifests); leave some out.
var ErrAttachments = errors.New("attachments that cannot be carried")

// ErrUpstreamNotCarried: upstream signatures are to be verified, but no
// attachments are carried.
var ErrUpstreamNotCarried = errors.New("verifying upstream signatures needs them carried")

// ValidAttachments checks an --attachments value ("" means all).
func ValidAttachments(mode string) error {
	switch mode {
	case "", AttachAll, AttachSignatures, AttachNone:
		return nil
	}
	return fmt.Errorf("attachments %q: want all, signatures or none", mode)
}

// attachments discovers what the source attaches to every manifest of an
// image (its own and, for an index, every manifest it reaches): cosign's
// .sig/.att/.sbom tags and OCI 1.1 referrers (the referrers API, or the
// sha256-<hex> tag fallback on registries without it). Each kept one is
// recorded with its blobs, like the image's.
func (c *collector) attachments(repo name.Repository, top v1.Hash, o Options) ([]bundle.Attachment, error) {
	if o.Attachments == AttachNone {
		return nil, nil
	}
	var out []bundle.Attachment
	for _, subject := range c.subjects(top) {
		found, err := c.discover(repo, subject, o)
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
	}
	if len(out) > bundle.MaxAttachments {
		return nil, fmt.Errorf("%w: %d is over the limit of %d", ErrAttachments, len(out), bundle.MaxAttachments)
	}
	return out, nil
}

// subjects lists top and, depth first, every manifest an index reaches,
// each once; the walk recorded all of them.
func (c *collector) subjects(top v1.Hash) []v1.Hash {
	seen := map[v1.Hash]bool{}
	var out []v1.Hash
	var visit func(h v1.Hash)
	visit = func(h v1.Hash) {
		if seen[h] {
			return
		}
		seen[h] = true
		out = append(out, h)
		im, err := v1.ParseIndexManifest(bytes.NewReader(c.manifests[h]))
		if err != nil || !im.MediaType.IsIndex() {
			return
		}
		for _, ch := range im.Manifests {
			if _, ok := c.manifests[ch.Digest]; ok {
				visit(ch.Digest)
			}
		}
	}
	visit(top)
	return out
}

// discover finds one subject's attachments: the three cosign tags, then
// the referrers.
func (c *collector) discover(repo name.Repository, subject v1.Hash, o Options) ([]bundle.Attachment, error) {
	var out []bundle.Attachment
	for _, suffix := range []string{"sig", "att", "sbom"} {
		tag := bundle.CosignTag(subject.String(), suffix)
		d, err := remote.Get(repo.Tag(tag), c.opts...)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("looking for cosign's %s of %s in %s: %w", tag, subject, repo, err)
		}
		a, keep, err := c.addAttachment(repo, subject, d.Descriptor, d.Manifest, tag, o)
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, a)
		}
	}
	idx, err := remote.Referrers(repo.Digest(subject.String()), c.opts...)
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s in %s: %w", subject, repo, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s in %s: %w", subject, repo, err)
	}
	for _, desc := range im.Manifests {
		if !desc.MediaType.IsImage() {
			return nil, fmt.Errorf("%w: referrer %s of %s has media type %s, and only image-manifest attachments are carried", ErrAttachments, desc.Digest, subject, desc.MediaType)
		}
		d, err := remote.Get(repo.Digest(desc.Digest.String()), c.opts...)
		if err != nil {
			return nil, fmt.Errorf("fetching referrer %s of %s: %w", desc.Digest, subject, err)
		}
		a, keep, err := c.addAttachment(repo, subject, d.Descriptor, d.Manifest, "", o)
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, a)
		}
	}
	return out, nil
}

// addAttachment checks one attachment's manifest, applies the filters and
// records the manifest and its blobs for the bundle.
func (c *collector) addAttachment(repo name.Repository, subject v1.Hash, desc v1.Descriptor, raw []byte, tag string, o Options) (bundle.Attachment, bool, error) {
	what := "referrer " + desc.Digest.String()
	if tag != "" {
		what = "cosign tag " + tag
	}
	if h, _, err := v1.SHA256(bytes.NewReader(raw)); err != nil || h != desc.Digest {
		return bundle.Attachment{}, false, fmt.Errorf("%s of %s: the manifest does not match its digest", what, subject)
	}
	if int64(len(raw)) > bundle.MaxManifestSize {
		return bundle.Attachment{}, false, fmt.Errorf("%s of %s: manifest of %d bytes is over the limit of %d", what, subject, len(raw), bundle.MaxManifestSize)
	}
	m, err := bundle.ParseAttachment(raw, desc.MediaType)
	if err != nil {
		return bundle.Attachment{}, false, fmt.Errorf("%s of %s: %v", what, subject, err)
	}
	if tag == "" && (m.Subject == nil || m.Subject.Digest != subject) {
		return bundle.Attachment{}, false, fmt.Errorf("%s is listed as a referrer of %s but its manifest names another subject", what, subject)
	}
	a := bundle.Attachment{Subject: subject.String(), Digest: desc.Digest.String(), MediaType: string(desc.MediaType),
		Size: int64(len(raw)), ArtifactType: m.ArtifactTypeOf(), Tag: tag, Kinds: bundle.Classify(m, tag)}
	if !keepAttachment(a, m, o) {
		return a, false, nil
	}
	if _, done := c.manifests[desc.Digest]; !done {
		c.manifests[desc.Digest] = raw
		c.order = append(c.order, desc.Digest)
		for _, b := range m.Blobs() {
			c.addBlob(repo, b)
		}
	}
	c.attachmentCount++
	return a, true, nil
}

// keepAttachment applies --attachments signatures and --attachment-type.
func keepAttachment(a bundle.Attachment, m *bundle.AttachmentManifest, o Options) bool {
	if o.Attachments == AttachSignatures && !a.IsSignatureOnly() {
		return false
	}
	if len(o.AttachmentTypes) == 0 {
		return true
	}
	for _, t := range o.AttachmentTypes {
		if t == a.ArtifactType || t == string(m.Config.MediaType) {
			return true
		}
		for _, l := range m.Layers {
			if t == string(l.MediaType) {
				return true
			}
		}
	}
	return false
}

// isNotFound is a registry's 404 (or MANIFEST_UNKNOWN) for a tag.
func isNotFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, e := range terr.Errors {
		if e.Code == transport.ManifestUnknownErrorCode || strings.EqualFold(string(e.Code), "NAME_UNKNOWN") {
			return true
		}
	}
	return false
}
