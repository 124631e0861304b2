// Package bundle owns the transfer formats of docs/bundle-format.md: the
// bundle (one tar holding the images, their digests and the pending TUF
// targets), the approval (the signed targets and cosign signatures, bound to
// one bundle) and the refresh bundle — their readers, their writers and
// what they mean for TUF targets. It moves nothing itself: bundle/export
// writes bundles on the connected side, bundle/approve signs on the
// air-gapped side, and mirror imports through this package. The limits
// below are part of the specification.
package bundle

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/coldharbor/coldharbor/trust"
)

// Format identifiers, checked exactly by readers.
const (
	BundleFormat   = "coldharbor.bundle.v1"
	ApprovalFormat = "coldharbor.approval.v1"
)

// Member names.
const (
	IndexName        = "coldharbor-bundle.json"
	ApprovalName     = "coldharbor-approval.json"
	PendingTargets   = "head/targets.json"
	headRootPrefix   = "head/root/"
	headPayloadPrefx = "head/payloads/"
	headIndexPrefix  = "head/indexes/" // + hex: a copy of an index manifest, so the signer sees its children
	LayoutFile       = "oci/oci-layout"
	LayoutIndex      = "oci/index.json"
	blobPrefix       = "oci/blobs/sha256/"
	ApprovalTargets  = "targets.json"
	ApprovalCosign   = "cosign.pub"
	// ApprovalAttestations (optional, after cosign.pub) carries the target
	// ceremony/attestations.json.
	ApprovalAttestations = "attestations.json"
	approvalRootPfx      = "root/"
	// MaxApprovalRoots bounds the root versions one approval carries.
	MaxApprovalRoots = 64
)

// Hard limits. A reader refuses anything beyond them before allocating.
const (
	MaxIndexSize    = 8 << 20   // coldharbor-bundle.json
	MaxHeadMember   = 5_000_000 // a head member (targets.json may be this large: go-tuf's limit)
	MaxHeadTotal    = 64 << 20  // all head members together
	MaxManifestSize = 4 << 20   // one manifest or index (registries refuse larger)
	MaxManifests    = 100_000
	MaxBlobSize     = 64 << 30 // one layer
	MaxMembers      = 1_000_000
	MaxImages       = 10_000
	MaxApproval     = 16 << 20 // the whole approval.tar
)

// Index is coldharbor-bundle.json, the first member of a bundle. Its sha256
// identifies the bundle: it lists the sha256 and size of every other member,
// so it binds the head and, through blob digests, every byte.
type Index struct {
	Format      string    `json:"format"`
	Tool        string    `json:"tool"`
	Created     time.Time `json:"created"`
	Destination string    `json:"destination"` // HOST[/PREFIX] the images are meant for
	Base        Base      `json:"base"`
	Images      []Image   `json:"images"`
	Removals    []string  `json:"removals"`
	// SignatureFormat is the export's --signature-format: "" or legacy (the
	// signer signs cosign payloads), bundle or auto (also the digests'
	// in-toto statements, so that the importer may write sigstore bundles).
	SignatureFormat string   `json:"signature_format,omitempty"`
	Members         []Member `json:"members"` // every other member, in tar order
	// Parts are the files after the first of a split bundle (3.7); none
	// for a bundle in one file.
	Parts []Part `json:"parts,omitempty"`
	// Present are blobs a differential bundle leaves out: published images
	// in the destination already hold them (3.8).
	Present []PresentBlob `json:"present,omitempty"`
}

// Base is the TUF state the exporter built the pending targets against.
type Base struct {
	RootVersion    int64 `json:"root_version"`
	TargetsVersion int64 `json:"targets_version"`
}

// Image is one target: a tagged image in the destination registry.
type Image struct {
	Name      string   `json:"name"`   // target name: REPOSITORY:TAG, relative to the destination
	Source    string   `json:"source"` // where it was pulled from, with digest
	Digest    string   `json:"digest"` // manifest or index digest
	MediaType string   `json:"media_type"`
	Size      int64    `json:"size"`
	Platforms []string `json:"platforms"`
	Payload   string   `json:"payload"` // member holding its cosign simple-signing payload
	// Children are the manifests an index reaches, each signed too; none
	// for a single manifest.
	Children []Child `json:"children,omitempty"`
	// Attachments are what the source attaches to the image's manifests
	// (signatures, attestations, SBOMs), carried as blobs of the bundle.
	Attachments []Attachment `json:"attachments,omitempty"`
	// Upstream records which --verify-upstream-key verified the vendor's
	// signature at export; absent when none was asked for.
	Upstream *UpstreamCheck `json:"upstream,omitempty"`
}

// Member is one tar member as the index records it.
type Member struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Approval is coldharbor-approval.json, the first member of an approval.
type Approval struct {
	Format         string    `json:"format"`
	Tool           string    `json:"tool"`
	Created        time.Time `json:"created"`
	Bundle         BundleRef `json:"bundle"`
	TargetsVersion int64     `json:"targets_version"`
	// Partial is set while the targets threshold is not met: the holders
	// who have signed and those who may still sign (each adds their
	// signatures in a later sitting). Import refuses a partial approval.
	// It informs; the signatures in targets.json are what counts.
	Partial    *Partial    `json:"partial,omitempty"`
	Signatures []Signature `json:"signatures"`
	Members    []Member    `json:"members"`
}

// Partial is the state of an approval short of the targets threshold.
type Partial struct {
	Threshold int      `json:"threshold"`
	SignedBy  []string `json:"signed_by"`
	MaySign   []string `json:"may_sign"`
	Missing   int      `json:"missing"`
}

// BundleRef binds an approval to exactly one bundle: the sha256 and size of
// that bundle's index member.
type BundleRef struct {
	IndexSHA256 string `json:"index_sha256"`
	IndexSize   int64  `json:"index_size"`
}

// Signature is one cosign signature over one image's payload.
type Signature struct {
	Image     string `json:"image"`   // target name
	Digest    string `json:"digest"`  // the image's or a child's digest: the one the payload names
	Payload   string `json:"payload"` // payload member in the bundle
	KeyID     string `json:"keyid"`   // TUF key ID of the targets key
	Signature string `json:"signature"`
	// Format is "" for a signature over the cosign payload, "bundle" for one
	// over the DSSE encoding of the digest's in-toto statement (StatementPAE).
	Format string `json:"format,omitempty"`
}

// TargetCustom is the "custom" object of each image target in targets.json.
type TargetCustom struct {
	MediaType string   `json:"mediaType"`
	Source    string   `json:"source,omitempty"`
	Platforms []string `json:"platforms,omitempty"`
	// Bundle is the index sha256 of the bundle that brought this version:
	// signed, so an approval cannot be replayed against another bundle.
	Bundle string `json:"bundle,omitempty"`
	// Attachments the image carries, signed so that none can go missing
	// between export and import.
	Attachments []Attachment `json:"attachments,omitempty"`
	// Upstream is the image's Upstream, signed with it.
	Upstream *UpstreamCheck `json:"upstream,omitempty"`
}

var (
	hexRE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
	rootRE     = regexp.MustCompile(`^[1-9][0-9]{0,9}\.root\.json$`)
	payloadRE  = regexp.MustCompile(`^[0-9]{1,6}\.json$`)
	digestRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	targetName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// memberKind classifies a bundle member name; "" means not allowed.
func memberKind(name string) string {
	switch {
	case name == IndexName:
		return "index"
	case name == PendingTargets:
		return "head"
	case strings.HasPrefix(name, headRootPrefix) && rootRE.MatchString(name[len(headRootPrefix):]):
		return "head"
	case strings.HasPrefix(name, headPayloadPrefx) && payloadRE.MatchString(name[len(headPayloadPrefx):]):
		return "head"
	case strings.HasPrefix(name, headIndexPrefix) && hexRE.MatchString(name[len(headIndexPrefix):]):
		return "head"
	case name == LayoutFile, name == LayoutIndex:
		return "layout"
	case strings.HasPrefix(name, blobPrefix) && hexRE.MatchString(name[len(blobPrefix):]):
		return "blob"
	}
	return ""
}

// IndexCopyName is the head member holding a copy of the index with digest.
func IndexCopyName(digest string) string {
	return headIndexPrefix + strings.TrimPrefix(digest, "sha256:")
}

// BlobName is the member name of a blob with the given digest.
func BlobName(digest string) string { return blobPrefix + strings.TrimPrefix(digest, "sha256:") }

// ValidTargetName reports whether name is REPOSITORY:TAG as registries accept it.
func ValidTargetName(name string) error {
	if len(name) > 255 || !targetName.MatchString(name) {
		return fmt.Errorf("invalid image name %q: want REPOSITORY:TAG (lowercase path, tag of letters, digits, . _ -)", name)
	}
	// The last path component becomes a file name under consistent
	// snapshots: "<64 hex>.<component>", plus a temporary suffix while it is
	// written; keep the whole under the usual 255-byte limit.
	last := name[strings.LastIndexByte(name, '/')+1:]
	if len(last) > trust.MaxTargetBase {
		return fmt.Errorf("invalid image name %q: its last part is %d bytes, at most %d fit in a target file name", name, len(last), trust.MaxTargetBase)
	}
	// cosign keeps signatures, attestations and SBOMs under these tags: an
	// image tagged so would overwrite, or be overwritten by, one of them.
	if cosignTagRE.MatchString(name[strings.LastIndexByte(name, ':')+1:]) {
		return fmt.Errorf("invalid image name %q: tags sha256-<hex>.sig/.att/.sbom are cosign's", name)
	}
	return nil
}

var cosignTagRE = regexp.MustCompile(`^sha256-[0-9a-f]{64}\.(sig|att|sbom)$`)

// printable refuses control characters and other unprintable runes in
// strings a signer is shown: escape sequences could redraw the screen the
// approval is given on.
func printable(field, s string) error {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s %q holds a control or unprintable character", field, s)
		}
	}
	return nil
}

// FormatError is a bundle or approval that is malformed or hostile: refused,
// with nothing touched.
type FormatError struct {
	File   string // bundle or approval path
	Member string
	Reason string
}

// As makes a format error a refusal: errors.As finds a
// *trust.VerificationError (What: bundle) in it, so callers check one type.
func (e *FormatError) As(target any) bool { return asRefusal(e, target) }

func asRefusal(err error, target any) bool {
	v, ok := target.(**trust.VerificationError)
	if ok {
		*v = &trust.VerificationError{What: trust.WhatBundle, Err: err}
	}
	return ok
}

func (e *FormatError) Error() string {
	if e.Member != "" {
		return fmt.Sprintf("%s: member %q: %s", e.File, e.Member, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Reason)
}

// decodeStrict decodes JSON refusing unknown fields and trailing data: the
// index is a contract, and a field we do not know could be one we should
// have checked.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// More() misses trailing data that starts with ']' or '}'; only a
	// clean EOF after the document will do.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON document")
	}
	return nil
}

func hexBytes(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid hex %q: %w", s, err)
	}
	return b, nil
}

// ValidDestination checks HOST[/PREFIX] of a target registry.
func ValidDestination(dest string) error {
	if dest == "" || strings.Contains(dest, "://") {
		return fmt.Errorf("destination %q: want HOST[/PREFIX], e.g. registry.internal:5000/mirror", dest)
	}
	if _, err := name.NewRepository(strings.TrimSuffix(dest, "/")+"/x", name.StrictValidation); err != nil {
		return fmt.Errorf("destination %q: want HOST[/PREFIX]: %w", dest, err)
	}
	return nil
}

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	return b, nil
}
