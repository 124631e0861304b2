package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
)

// Bundle is an opened bundle file: its head read and checked, and the
// offset of every other member, so blobs can be read in any order and in
// parallel without unpacking anything to disk.
type Bundle struct {
	Head    *Head
	path    string
	files   []*os.File  // the bundle, or every part of a split one
	ra      io.ReaderAt // the whole tar, across parts
	members map[string]span
	Layout  []byte // oci/index.json
	present presentIndex
}

type span struct{ off, size int64 }

// Open reads a bundle's structure: the head (checked as ReadHead does),
// then every remaining member's header, refusing links and other special
// members, names the index does not list, members out of order, duplicates,
// sizes that differ from the index, and truncation. Small layout members
// are hash-checked now; blobs are checked against their digest when read.
func Open(path string) (*Bundle, error) {
	f, fi, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	b := &Bundle{path: path, files: []*os.File{f}, ra: f, members: map[string]span{}}
	if err := b.open(f, fi.Size()); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// open reads the head from f and then the structure of the rest: in f, or
// for a split bundle in the parts beside it, each checked first.
func (b *Bundle) open(f *os.File, fileSize int64) error {
	// The tar reader reads headers in whole 512-byte blocks with no
	// read-ahead and seeks over member data, so the position after the
	// head is exactly where the last head member's data ended.
	sr := io.NewSectionReader(f, 0, fileSize)
	head, err := ReadHead(sr, b.path)
	if err != nil {
		return err
	}
	b.Head = head
	pos, err := sr.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	size := fileSize
	// A split bundle's first part ends after the head; its parts
	// concatenated are one bundle, read as any other (every member
	// checked against the index, blobs against their digests).
	if len(head.Index.Parts) > 0 && fileSize <= HeadPartSize(head.IndexRaw, head.Index.Members) {
		if want := HeadPartSize(head.IndexRaw, head.Index.Members); fileSize != want {
			return &FormatError{File: b.path, Reason: fmt.Sprintf("the first part of a split bundle is %d bytes, its index makes it %d", fileSize, want)}
		}
		parts, ra, total, err := openParts(b.path, f, fileSize, head.Index)
		if err != nil {
			return err
		}
		b.files = append(b.files, parts...)
		b.ra, size = ra, total
	}
	return b.scan(pos, size)
}

// Ref is what an approval of this bundle binds to: its index's sha256 and size.
func (b *Bundle) Ref() BundleRef {
	return BundleRef{IndexSHA256: b.Head.IndexSHA256, IndexSize: int64(len(b.Head.IndexRaw))}
}

// Destination is HOST[/PREFIX] the bundle was exported for.
func (b *Bundle) Destination() string { return b.Head.Index.Destination }

// Images are the images the bundle carries, in index order.
func (b *Bundle) Images() []Image { return b.Head.Index.Images }

// PayloadBytes returns the payload member with the given name (an image's
// or a child's; see Image.SignedDigests), nil if the head has none.
func (b *Bundle) PayloadBytes(member string) []byte { return b.Head.Payloads[member] }

// Close closes the bundle file (every part of a split bundle).
func (b *Bundle) Close() error {
	var first error
	for _, f := range b.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// scan reads the header of every member after the head, which ended at
// pos, in the tar of fileSize bytes (across parts).
func (b *Bundle) scan(pos, fileSize int64) error {
	// ReadHead stopped after the last head member; its tar reader is gone,
	// so restart one from there, after that member's padding to the next
	// 512-byte boundary. Tar members are self-delimiting.
	pos = (pos + 511) / 512 * 512
	rs := io.NewSectionReader(b.ra, 0, fileSize)
	if _, err := rs.Seek(pos, io.SeekStart); err != nil {
		return err
	}
	head := b.Head
	tr := tar.NewReader(rs)
	rest := head.Index.Members
	for len(rest) > 0 && memberKind(rest[0].Name) == "head" {
		rest = rest[1:]
	}
	for _, m := range rest {
		h, err := nextMember(tr, b.path)
		if err == io.EOF {
			return &FormatError{File: b.path, Member: m.Name, Reason: "missing: the bundle ends early (truncated?)"}
		}
		if err != nil {
			return err
		}
		if h.Name != m.Name {
			if _, dup := b.members[h.Name]; dup {
				return &FormatError{File: b.path, Member: h.Name, Reason: "appears twice"}
			}
			return &FormatError{File: b.path, Member: h.Name, Reason: fmt.Sprintf("out of order or not in the index: the index lists %q here", m.Name)}
		}
		if h.Size != m.Size {
			return &FormatError{File: b.path, Member: h.Name, Reason: fmt.Sprintf("size %d, the index says %d", h.Size, m.Size)}
		}
		off, err := rs.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		if off+h.Size > fileSize {
			return &FormatError{File: b.path, Member: h.Name, Reason: fmt.Sprintf("truncated: %d bytes declared, the file ends %d bytes in", h.Size, fileSize-off)}
		}
		b.members[m.Name] = span{off, h.Size}
		if memberKind(m.Name) == "layout" {
			data, err := readMember(tr, h, m, MaxManifestSize, b.path)
			if err != nil {
				return err
			}
			if m.Name == LayoutIndex {
				b.Layout = data
			}
		}
	}
	if h, err := nextMember(tr, b.path); err != io.EOF {
		if err == nil {
			return &FormatError{File: b.path, Member: h.Name, Reason: "not listed in the index"}
		}
		return err
	}
	return nil
}

// HasBlob reports whether the bundle holds a blob with this digest.
func (b *Bundle) HasBlob(digest string) (int64, bool) {
	s, ok := b.members[BlobName(digest)]
	return s.size, ok
}

// ReadBlob reads a whole blob of at most limit bytes and checks its digest.
func (b *Bundle) ReadBlob(digest string, limit int64) ([]byte, error) {
	s, ok := b.members[BlobName(digest)]
	if !ok {
		return nil, &FormatError{File: b.path, Member: BlobName(digest), Reason: "not in the bundle"}
	}
	if s.size > limit {
		return nil, &FormatError{File: b.path, Member: BlobName(digest), Reason: fmt.Sprintf("%d bytes is over the limit of %d", s.size, limit)}
	}
	data := make([]byte, s.size)
	if _, err := b.ra.ReadAt(data, s.off); err != nil {
		return nil, &FormatError{File: b.path, Member: BlobName(digest), Reason: fmt.Sprintf("reading: %v", err)}
	}
	sum := sha256.Sum256(data)
	if "sha256:"+hex.EncodeToString(sum[:]) != digest {
		return nil, &DigestError{Member: BlobName(digest), Want: digest, Got: "sha256:" + hex.EncodeToString(sum[:])}
	}
	return data, nil
}

// BlobReader streams a blob; the reader returns a *DigestError at EOF if
// the content does not match the digest, so nothing that reads it to the end
// can accept a tampered blob.
func (b *Bundle) BlobReader(digest string) (io.ReadCloser, int64, error) {
	s, ok := b.members[BlobName(digest)]
	if !ok {
		return nil, 0, &FormatError{File: b.path, Member: BlobName(digest), Reason: "not in the bundle"}
	}
	return &verifyingReader{r: io.NewSectionReader(b.ra, s.off, s.size), h: sha256.New(), want: digest, member: BlobName(digest)}, s.size, nil
}

// Blobs lists the digests of every blob member.
func (b *Bundle) Blobs() []string {
	var out []string
	for _, m := range b.Head.Index.Members {
		if memberKind(m.Name) == "blob" {
			out = append(out, "sha256:"+m.SHA256)
		}
	}
	return out
}

// DigestError is content that does not match its digest: tampering or
// corruption. It is a refusal.
type DigestError struct {
	Member    string
	Want, Got string
}

// As makes a digest mismatch a refusal, as FormatError.As does.
func (e *DigestError) As(target any) bool { return asRefusal(e, target) }

func (e *DigestError) Error() string {
	return fmt.Sprintf("%s: content has digest %s, expected %s (tampered or corrupt)", e.Member, e.Got, e.Want)
}

type verifyingReader struct {
	r      io.Reader
	h      hash.Hash
	want   string
	member string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, &DigestError{Member: v.member, Want: v.want, Got: got}
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return nil }
