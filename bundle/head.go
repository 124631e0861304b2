package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Head is what the signer reads: the index and the head members, each
// checked against the index. No blob is read to make it.
type Head struct {
	Index       *Index
	IndexRaw    []byte
	IndexSHA256 string // hex; what an approval binds to
	Pending     []byte // head/targets.json (unsigned)
	Roots       map[int64][]byte
	Payloads    map[string][]byte // member name → payload bytes
	Indexes     map[string][]byte // digest → index manifest (head/indexes/<hex>, hash-checked)
}

// IndexBytes returns the bytes of an index the head carries, for Descendants.
func (h *Head) IndexBytes(digest string) ([]byte, bool) {
	b, ok := h.Indexes[digest]
	return b, ok
}

// ReadHead reads a bundle's index and head from r and stops at the first
// member after the head: signing time does not grow with image size, and a
// bundle whose blob part is garbage still yields its head.
func ReadHead(r io.Reader, file string) (*Head, error) {
	l, raw, err := openListed(r, file, headKind, MaxIndexSize)
	if err != nil {
		return nil, err
	}
	idx, err := parseIndex(raw, file)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	head := &Head{Index: idx, IndexRaw: raw, IndexSHA256: hex.EncodeToString(sum[:]), Roots: map[int64][]byte{}, Payloads: map[string][]byte{}, Indexes: map[string][]byte{}}
	var total int64
	for _, m := range idx.Members {
		if memberKind(m.Name) != "head" {
			break
		}
		if total += m.Size; total > MaxHeadTotal {
			return nil, &FormatError{File: file, Member: m.Name, Reason: fmt.Sprintf("the head is over its limit of %d bytes", MaxHeadTotal)}
		}
		data, err := l.next(m, MaxHeadMember)
		if err != nil {
			return nil, err
		}
		switch {
		case m.Name == PendingTargets:
			head.Pending = data
		case strings.HasPrefix(m.Name, headRootPrefix):
			var v int64
			fmt.Sscanf(m.Name[len(headRootPrefix):], "%d", &v)
			head.Roots[v] = data
		case strings.HasPrefix(m.Name, headIndexPrefix):
			head.Indexes["sha256:"+m.Name[len(headIndexPrefix):]] = data
		default:
			head.Payloads[m.Name] = data
		}
	}
	if head.Pending == nil {
		return nil, &FormatError{File: file, Reason: "no " + PendingTargets + " in the head"}
	}
	// The root chain the exporter saw: every version from 1 to the base.
	if int64(len(head.Roots)) != idx.Base.RootVersion {
		return nil, &FormatError{File: file, Reason: fmt.Sprintf("the head holds %d root version(s), base.root_version is %d", len(head.Roots), idx.Base.RootVersion)}
	}
	for v := int64(1); v <= idx.Base.RootVersion; v++ {
		if _, ok := head.Roots[v]; !ok {
			return nil, &FormatError{File: file, Reason: fmt.Sprintf("root v%d is missing from the head's root chain", v)}
		}
	}
	for _, img := range idx.Images {
		for _, sd := range img.SignedDigests() {
			if _, ok := head.Payloads[sd.Payload]; !ok {
				return nil, &FormatError{File: file, Reason: fmt.Sprintf("image %s: payload %s is not in the head", img.Name, sd.Payload)}
			}
		}
	}
	return head, nil
}

// parseIndex decodes and checks coldharbor-bundle.json: known format,
// member names of known shapes in the required order (head, layout, blobs),
// no duplicates, sizes within limits, valid image names and digests.
func parseIndex(raw []byte, file string) (*Index, error) {
	var idx Index
	err := decodeStrict(raw, &idx)
	if err != nil {
		err = fmt.Errorf("not valid JSON for %s: %v", BundleFormat, err)
	} else {
		err = idx.check()
	}
	if err != nil {
		return nil, &FormatError{File: file, Member: IndexName, Reason: err.Error()}
	}
	return &idx, nil
}

// check runs every check of the index, in order.
func (idx *Index) check() error {
	if err := idx.checkHeader(); err != nil {
		return err
	}
	seen, err := idx.checkMembers()
	if err != nil {
		return err
	}
	if err := idx.checkTexts(); err != nil {
		return err
	}
	if err := ValidSignatureFormat(idx.SignatureFormat); err != nil {
		return err
	}
	if err := checkPresent(idx.Present, seen); err != nil {
		return err
	}
	return idx.checkImages(seen)
}

// checkHeader checks the format, the limits and the base versions.
func (idx *Index) checkHeader() error {
	if idx.Format != BundleFormat {
		return fmt.Errorf("format %q, this coldharbor reads %q", idx.Format, BundleFormat)
	}
	if len(idx.Members) > MaxMembers {
		return fmt.Errorf("%d members is over the limit of %d", len(idx.Members), MaxMembers)
	}
	// No images and no removals is a renewal: signing it only renews the
	// targets' expiry. It carries no blobs.
	if len(idx.Images) == 0 && len(idx.Removals) == 0 {
		for _, m := range idx.Members {
			if memberKind(m.Name) == "blob" {
				return fmt.Errorf("no images and no removals, yet blob %s: a renewal bundle carries no blobs", m.Name)
			}
		}
	}
	if err := checkParts(idx.Parts); err != nil {
		return err
	}
	if len(idx.Images) > MaxImages {
		return fmt.Errorf("%d images is over the limit of %d", len(idx.Images), MaxImages)
	}
	if err := ValidDestination(idx.Destination); err != nil {
		return err
	}
	if idx.Base.RootVersion < 1 || idx.Base.TargetsVersion < 0 {
		return fmt.Errorf("base versions root %d, targets %d are out of range", idx.Base.RootVersion, idx.Base.TargetsVersion)
	}
	return nil
}

// checkMembers checks member names, order (head members, then oci-layout
// and index.json, then blobs), hashes and sizes; it returns the names.
func (idx *Index) checkMembers() (map[string]bool, error) {
	rank := map[string]int{"head": 0, "layout": 1, "blob": 2}
	seen := map[string]bool{}
	last := 0
	for _, m := range idx.Members {
		kind := memberKind(m.Name)
		switch {
		case kind == "" || kind == "index":
			return nil, fmt.Errorf("member name %q is not allowed in a bundle", m.Name)
		case seen[m.Name]:
			return nil, fmt.Errorf("member %q is listed twice", m.Name)
		case rank[kind] < last:
			return nil, fmt.Errorf("member %q is out of order (head, then oci layout, then blobs)", m.Name)
		case !hexRE.MatchString(m.SHA256):
			return nil, fmt.Errorf("member %q: sha256 %q is not 64 hex digits", m.Name, m.SHA256)
		case m.Size < 0 || m.Size > MaxBlobSize:
			return nil, fmt.Errorf("member %q: size %d is out of range", m.Name, m.Size)
		case kind == "blob" && m.SHA256 != strings.TrimPrefix(m.Name, blobPrefix):
			return nil, fmt.Errorf("blob %q: sha256 %s is not its name", m.Name, m.SHA256)
		case strings.HasPrefix(m.Name, headIndexPrefix) && (m.SHA256 != m.Name[len(headIndexPrefix):] || m.Size > MaxManifestSize):
			return nil, fmt.Errorf("index copy %q: sha256 %s is not its name, or it is over %d bytes", m.Name, m.SHA256, MaxManifestSize)
		}
		seen[m.Name] = true
		last = rank[kind]
	}
	for _, f := range []string{PendingTargets, LayoutFile, LayoutIndex} {
		if !seen[f] {
			return nil, fmt.Errorf("member %q is missing", f)
		}
	}
	return seen, nil
}

// checkTexts refuses control characters in what a signer is shown.
func (idx *Index) checkTexts() error {
	texts := [][2]string{{"tool", idx.Tool}, {"destination", idx.Destination}}
	for _, img := range idx.Images {
		texts = append(texts, [2]string{"source", img.Source}, [2]string{"media_type", img.MediaType})
		for _, p := range img.Platforms {
			texts = append(texts, [2]string{"platform", p})
		}
	}
	for _, t := range texts {
		if err := printable(t[0], t[1]); err != nil {
			return err
		}
	}
	return nil
}

// checkImages checks each image and removal: valid unique names, digests
// and sizes, a manifest and signed payloads the bundle holds.
func (idx *Index) checkImages(seen map[string]bool) error {
	names := map[string]bool{}
	for _, img := range idx.Images {
		if err := ValidTargetName(img.Name); err != nil {
			return err
		}
		switch {
		case names[img.Name]:
			return fmt.Errorf("image %s is listed twice", img.Name)
		case !digestRE.MatchString(img.Digest):
			return fmt.Errorf("image %s: digest %q is not sha256:<64 hex>", img.Name, img.Digest)
		case img.Size <= 0 || img.Size > MaxManifestSize:
			return fmt.Errorf("image %s: manifest size %d is out of range", img.Name, img.Size)
		case !seen[BlobName(img.Digest)]:
			return fmt.Errorf("image %s: its manifest %s is not in the bundle", img.Name, img.Digest)
		}
		names[img.Name] = true
		if err := checkSignedList(img, seen); err != nil {
			return err
		}
		if err := checkAttachments(img, seen); err != nil {
			return err
		}
		if err := checkUpstream(img); err != nil {
			return err
		}
	}
	for _, r := range idx.Removals {
		if err := ValidTargetName(r); err != nil {
			return fmt.Errorf("removal: %v", err)
		}
		if names[r] {
			return fmt.Errorf("%s is both added and removed, or removed twice", r)
		}
		names[r] = true
	}
	return nil
}

// checkSignedList checks what an image asks to be signed: its payload and
// each child's are listed head payload members; children have valid,
// distinct digests; an index's copy is in the head (the signer derives the
// children from it); a single manifest has no children.
func checkSignedList(img Image, listed map[string]bool) error {
	if len(img.Children) > maxChildren {
		return fmt.Errorf("image %s: %d children is over the limit of %d", img.Name, len(img.Children), maxChildren)
	}
	if types.MediaType(img.MediaType).IsIndex() {
		if !listed[IndexCopyName(img.Digest)] {
			return fmt.Errorf("image %s: the head lacks a copy of its index (%s)", img.Name, IndexCopyName(img.Digest))
		}
	} else if len(img.Children) > 0 {
		return fmt.Errorf("image %s: a %s has no child manifests to sign", img.Name, img.MediaType)
	}
	seen := map[string]bool{}
	for _, sd := range img.SignedDigests() {
		if !digestRE.MatchString(sd.Digest) {
			return fmt.Errorf("image %s: digest %q is not sha256:<64 hex>", img.Name, sd.Digest)
		}
		if seen[sd.Digest] {
			return fmt.Errorf("image %s: manifest %s is listed twice for signing", img.Name, sd.Digest)
		}
		seen[sd.Digest] = true
		if !strings.HasPrefix(sd.Payload, headPayloadPrefx) || memberKind(sd.Payload) != "head" || !listed[sd.Payload] {
			return fmt.Errorf("image %s: payload %q is not a head member", img.Name, sd.Payload)
		}
	}
	return nil
}
