package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the source registry attaches to an image's manifests — cosign's
// sha256-<hex>.sig/.att/.sbom tags and OCI 1.1 referrers (manifests whose
// subject is the image) — travels with it (docs/bundle-format.md 3.4b).
// Each is listed against its subject in the index and in the signed
// target's custom data, so the signer approves it and the importer refuses
// a bundle that lacks or alters one.

// Kinds of attachment entries, as the signer is shown them.
const (
	KindSignature   = "signature"
	KindAttestation = "attestation"
	KindProvenance  = "provenance"
	KindSBOM        = "sbom"
	KindVuln        = "vulnerability report"
	KindOther       = "other"
)

// Media types and annotations of cosign and sigstore attachments.
const (
	SigstoreBundleType  = "application/vnd.dev.sigstore.bundle.v0.3+json"
	CosignSigArtifact   = "application/vnd.dev.cosign.artifact.sig.v1+json"
	DSSEMediaType       = "application/vnd.dsse.envelope.v1+json"
	simpleSigningType   = "application/vnd.dev.cosign.simplesigning.v1+json"
	predicateAnnotation = "predicateType"
	// cosign v3 writes this on a sigstore bundle referrer's manifest.
	bundlePredicateAnnotation = "dev.sigstore.bundle.predicateType"
	// CosignSignPredicate is the in-toto predicate of a cosign v3 signature.
	CosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
)

// MaxAttachments bounds the attachments one image (with its children)
// carries, and MaxAttachmentEntries the entries (layers) of one.
const (
	MaxAttachments       = 1000
	MaxAttachmentEntries = 1000
)

// Attachment is one manifest the source attaches to one of an image's
// manifests (the image's own, or a child of its index).
type Attachment struct {
	Subject   string `json:"subject"` // digest of the manifest it is attached to
	Digest    string `json:"digest"`  // the attachment's own manifest
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
	// ArtifactType is the manifest's artifactType, else its config's media type.
	ArtifactType string `json:"artifact_type"`
	// Tag is cosign's tag sha256-<subject hex>.sig|.att|.sbom the attachment
	// lives under; empty for an OCI 1.1 referrer (the manifest's subject
	// names Subject).
	Tag string `json:"tag,omitempty"`
	// Kinds has one entry per thing the attachment holds (a cosign tag holds
	// one per layer), as Classify derives them from the manifest.
	Kinds []string `json:"kinds"`
}

// UpstreamCheck is what export --verify-upstream-key found: the key that
// verified the vendor's signature on the image's digest, and that signature.
type UpstreamCheck struct {
	Key       string `json:"key"`       // sha256:<hex> of the key's PKIX DER
	Signature string `json:"signature"` // digest of the attachment holding the signature
	Format    string `json:"format"`    // "legacy" (cosign .sig) or "bundle" (sigstore bundle referrer)
}

// Name identifies an attachment in messages.
func (a Attachment) Name() string {
	where := "referrer"
	if a.Tag != "" {
		where = "tag " + a.Tag
	}
	return fmt.Sprintf("attachment %s (%s of %s, %s)", a.Digest, strings.Join(uniq(a.Kinds), "+"), a.Subject, where)
}

// AttachmentManifest is the part of an attachment's manifest coldharbor
// reads: an OCI image manifest, possibly with artifactType and subject.
type AttachmentManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// ParseAttachment reads an attachment's manifest: an image manifest (an
// index as attachment is not carried) with at most MaxAttachmentEntries layers.
func ParseAttachment(raw []byte, mt types.MediaType) (*AttachmentManifest, error) {
	if !mt.IsImage() {
		return nil, fmt.Errorf("media type %s: only image manifests are carried as attachments", mt)
	}
	var m AttachmentManifest
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&m); err != nil {
		return nil, fmt.Errorf("not a manifest: %v", err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("schemaVersion %d, want 2", m.SchemaVersion)
	}
	if len(m.Layers) > MaxAttachmentEntries {
		return nil, fmt.Errorf("%d layers is over the limit of %d", len(m.Layers), MaxAttachmentEntries)
	}
	return &m, nil
}

// Blobs are the config and layers an attachment's manifest references.
func (m *AttachmentManifest) Blobs() []v1.Descriptor {
	return append([]v1.Descriptor{m.Config}, m.Layers...)
}

// ArtifactTypeOf is the artifact type OCI 1.1 gives a manifest: its
// artifactType, else its config's media type.
func (m *AttachmentManifest) ArtifactTypeOf() string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	return string(m.Config.MediaType)
}

// Classify derives what an attachment holds from its manifest: for a cosign
// tag one kind per layer (by its tag suffix and each layer's predicate
// type), for a referrer one kind (by artifact type and predicate type).
func Classify(m *AttachmentManifest, tag string) []string {
	var kinds []string
	switch {
	case strings.HasSuffix(tag, ".sig"):
		for range m.Layers {
			kinds = append(kinds, KindSignature)
		}
	case strings.HasSuffix(tag, ".att"):
		for _, l := range m.Layers {
			kinds = append(kinds, predicateKind(l.Annotations[predicateAnnotation]))
		}
	case strings.HasSuffix(tag, ".sbom"):
		for range m.Layers {
			kinds = append(kinds, KindSBOM)
		}
	default:
		kinds = []string{referrerKind(m)}
	}
	if len(kinds) == 0 {
		kinds = []string{KindOther}
	}
	return kinds
}

func referrerKind(m *AttachmentManifest) string {
	at := m.ArtifactTypeOf()
	switch {
	case at == SigstoreBundleType:
		pt := m.Annotations[bundlePredicateAnnotation]
		if pt == "" || pt == CosignSignPredicate {
			return KindSignature
		}
		return predicateKind(pt)
	case at == CosignSigArtifact || at == simpleSigningType:
		return KindSignature
	case strings.Contains(at, "spdx") || strings.Contains(at, "cyclonedx") || strings.Contains(at, "syft"):
		return KindSBOM
	case strings.Contains(at, "in-toto") || at == DSSEMediaType:
		return predicateKind(m.Annotations[predicateAnnotation])
	}
	return KindOther
}

// predicateKind names an in-toto predicate type.
func predicateKind(pt string) string {
	switch {
	case pt == CosignSignPredicate:
		return KindSignature
	case strings.HasPrefix(pt, "https://slsa.dev/provenance/") || pt == "slsaprovenance":
		return KindProvenance
	case strings.HasPrefix(pt, "https://spdx.dev/") || strings.HasPrefix(pt, "https://cyclonedx.org/"):
		return KindSBOM
	case strings.HasPrefix(pt, "https://cosign.sigstore.dev/attestation/vuln/"):
		return KindVuln
	}
	return KindAttestation
}

// IsSignatureOnly reports whether every entry of a is a signature.
func (a Attachment) IsSignatureOnly() bool {
	for _, k := range a.Kinds {
		if k != KindSignature {
			return false
		}
	}
	return len(a.Kinds) > 0
}

// CosignTag is cosign's tag for digest's signatures, attestations or SBOMs
// (suffix "sig", "att" or "sbom").
func CosignTag(digest, suffix string) string {
	return strings.Replace(digest, ":", "-", 1) + "." + suffix
}

// Summary counts an image's attachment entries for the signer:
// "2 signatures, 1 SBOM, 1 provenance".
func Summary(atts []Attachment) string {
	counts := map[string]int{}
	for _, a := range atts {
		for _, k := range a.Kinds {
			counts[k]++
		}
	}
	var parts []string
	for _, k := range []string{KindSignature, KindSBOM, KindProvenance, KindAttestation, KindVuln, KindOther} {
		if n := counts[k]; n > 0 {
			parts = append(parts, countNoun(n, k))
		}
	}
	return strings.Join(parts, ", ")
}

func countNoun(n int, kind string) string {
	noun := kind
	switch kind {
	case KindSBOM:
		noun = "SBOM"
	case KindOther:
		noun = "other attachment"
	}
	if n != 1 && kind != KindProvenance {
		noun += "s"
	}
	return fmt.Sprintf("%d %s", n, noun)
}

var knownKinds = map[string]bool{KindSignature: true, KindAttestation: true, KindProvenance: true, KindSBOM: true, KindVuln: true, KindOther: true}

// checkAttachments validates an image's attachment list in the index.
func checkAttachments(img Image, listed map[string]bool) error {
	if len(img.Attachments) > MaxAttachments {
		return fmt.Errorf("image %s: %d attachments is over the limit of %d", img.Name, len(img.Attachments), MaxAttachments)
	}
	seen := map[string]bool{}
	for _, a := range img.Attachments {
		if !digestRE.MatchString(a.Subject) || !digestRE.MatchString(a.Digest) {
			return fmt.Errorf("image %s: attachment %q of %q: digests must be sha256:<64 hex>", img.Name, a.Digest, a.Subject)
		}
		if a.Subject == a.Digest {
			return fmt.Errorf("image %s: attachment %s is attached to itself", img.Name, a.Digest)
		}
		if seen[a.Subject+a.Digest] {
			return fmt.Errorf("image %s: attachment %s of %s is listed twice", img.Name, a.Digest, a.Subject)
		}
		seen[a.Subject+a.Digest] = true
		if a.Size <= 0 || a.Size > MaxManifestSize {
			return fmt.Errorf("image %s: attachment %s: size %d is out of range", img.Name, a.Digest, a.Size)
		}
		if !listed[BlobName(a.Digest)] {
			return fmt.Errorf("image %s: %s is not in the bundle", img.Name, a.Name())
		}
		if a.Tag != "" && a.Tag != CosignTag(a.Subject, "sig") && a.Tag != CosignTag(a.Subject, "att") && a.Tag != CosignTag(a.Subject, "sbom") {
			return fmt.Errorf("image %s: attachment %s: tag %q is not cosign's sha256-<subject hex>.sig/.att/.sbom", img.Name, a.Digest, a.Tag)
		}
		if len(a.Kinds) == 0 || len(a.Kinds) > MaxAttachmentEntries {
			return fmt.Errorf("image %s: attachment %s: %d kinds (want 1 to %d)", img.Name, a.Digest, len(a.Kinds), MaxAttachmentEntries)
		}
		for _, k := range a.Kinds {
			if !knownKinds[k] {
				return fmt.Errorf("image %s: attachment %s: unknown kind %q", img.Name, a.Digest, k)
			}
		}
		for _, s := range []string{a.MediaType, a.ArtifactType} {
			if err := printable("attachment media type", s); err != nil {
				return fmt.Errorf("image %s: %v", img.Name, err)
			}
		}
	}
	return nil
}

// checkUpstream validates an image's upstream check in the index: the
// signature it names is one of the image's attachments, on its digest.
func checkUpstream(img Image) error {
	u := img.Upstream
	if u == nil {
		return nil
	}
	if !digestRE.MatchString(u.Key) || (u.Format != "legacy" && u.Format != "bundle") {
		return fmt.Errorf("image %s: upstream check: key %q, format %q", img.Name, u.Key, u.Format)
	}
	for _, a := range img.Attachments {
		if a.Digest == u.Signature && a.Subject == img.Digest && a.IsSignatureOnly() {
			return nil
		}
	}
	return fmt.Errorf("image %s: upstream check names signature %q, which is not a signature attached to %s", img.Name, u.Signature, img.Digest)
}

// SameAttachments compares two attachment lists as sets; it returns an
// attachment only a has, else one only b has.
func SameAttachments(a, b []Attachment) (onlyA, onlyB *Attachment) {
	key := func(x Attachment) string {
		j, _ := json.Marshal(x)
		return string(j)
	}
	in := func(list []Attachment) map[string]bool {
		m := map[string]bool{}
		for _, x := range list {
			m[key(x)] = true
		}
		return m
	}
	ia, ib := in(a), in(b)
	for i := range a {
		if !ib[key(a[i])] {
			return &a[i], nil
		}
	}
	for i := range b {
		if !ia[key(b[i])] {
			return nil, &b[i]
		}
	}
	return nil, nil
}

func uniq(s []string) []string {
	m := map[string]bool{}
	var out []string
	for _, x := range s {
		if !m[x] {
			m[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}
