package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

// A split bundle (docs/bundle-format.md 3.7) is one bundle tar cut into
// files for removable media: part 0 (FILE.000) holds the index, the head
// and the layout members and nothing else, so a signer needs only it;
// parts 1… (FILE.001, …) hold the blob members and the end of the tar,
// cut at byte boundaries, each at most the part size. The index lists the
// size and sha256 of parts 1…, so the bundle ID binds every byte, and the
// parts concatenated are the same bundle as one file.

// Part is one file after the first of a split bundle, as the index lists it.
type Part struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Limits of a split.
const (
	MaxParts    = 10_000
	MinPartSize = 1024
)

// FirstPartSuffix ends the name of a split bundle's first part.
const FirstPartSuffix = ".000"

// PartPath is the path of part n of the split bundle whose first part is
// first (FILE.000): FILE.001, FILE.002, …
func PartPath(first string, n int) string {
	return fmt.Sprintf("%s.%03d", strings.TrimSuffix(first, FirstPartSuffix), n)
}

// HeadPartSize is the size of part 0 of a split bundle: the index (raw)
// and the head and layout members, each padded to 512 bytes, no end blocks.
func HeadPartSize(raw []byte, listed []Member) int64 {
	total := tarBlocks(int64(len(raw)))
	for _, m := range listed {
		if memberKind(m.Name) != "blob" {
			total += tarBlocks(m.Size)
		}
	}
	return total
}

// BlobSectionSize is the size of parts 1… together: every blob member and
// the two zero blocks that end the tar.
func BlobSectionSize(listed []Member) int64 {
	total := int64(1024)
	for _, m := range listed {
		if memberKind(m.Name) == "blob" {
			total += tarBlocks(m.Size)
		}
	}
	return total
}

// PartWriter cuts what is written to it into parts of at most size bytes,
// each made by create(n) for n = 1, 2, …, and records their sizes and sha256.
type PartWriter struct {
	create func(n int) (io.WriteCloser, error)
	size   int64
	cur    io.WriteCloser
	h      hash.Hash
	n      int64
	parts  []Part
}

// NewPartWriter cuts parts of size bytes with create.
func NewPartWriter(size int64, create func(n int) (io.WriteCloser, error)) *PartWriter {
	return &PartWriter{create: create, size: size}
}

func (p *PartWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		if p.cur == nil {
			if len(p.parts) >= MaxParts {
				return written, fmt.Errorf("more than %d parts", MaxParts)
			}
			w, err := p.create(len(p.parts) + 1)
			if err != nil {
				return written, err
			}
			p.cur, p.h, p.n = w, sha256.New(), 0
		}
		chunk := b[:min(int64(len(b)), p.size-p.n)]
		n, err := p.cur.Write(chunk)
		p.h.Write(chunk[:n])
		p.n += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		b = b[n:]
		if p.n == p.size {
			if err := p.finish(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (p *PartWriter) finish() error {
	err := p.cur.Close()
	p.parts = append(p.parts, Part{Size: p.n, SHA256: hex.EncodeToString(p.h.Sum(nil))})
	p.cur = nil
	return err
}

// Close closes the last part and returns every part written.
func (p *PartWriter) Close() ([]Part, error) {
	if p.cur != nil {
		if err := p.finish(); err != nil {
			return nil, err
		}
	}
	return p.parts, nil
}

// openParts opens parts 1… of the split bundle whose first part (path,
// size headSize) is f, checks each one's size and sha256 against the index
// (every part read once, in parallel), and returns all of them as one
// reader and its size. A missing, short or altered part is named.
func openParts(path string, f *os.File, headSize int64, idx *Index) ([]*os.File, io.ReaderAt, int64, error) {
	if !strings.HasSuffix(path, FirstPartSuffix) {
		return nil, nil, 0, &FormatError{File: path, Reason: "a split bundle is opened by its first part, FILE" + FirstPartSuffix}
	}
	files := make([]*os.File, len(idx.Parts))
	closeAll := func() {
		for _, pf := range files {
			if pf != nil {
				pf.Close()
			}
		}
	}
	var g errgroup.Group
	g.SetLimit(2)
	var mu sync.Mutex
	for i, want := range idx.Parts {
		g.Go(func() error {
			pf, err := openPart(PartPath(path, i+1), want)
			mu.Lock()
			files[i] = pf
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		closeAll()
		return nil, nil, 0, err
	}
	m := &multiReaderAt{}
	m.add(f, headSize)
	for i, pf := range files {
		m.add(pf, idx.Parts[i].Size)
	}
	return files, m, m.size, nil
}

// openPart opens one part and checks its size and sha256.
func openPart(path string, want Part) (*os.File, error) {
	f, fi, err := openRegular(path)
	if err := partSize(path, fi, err, want); err != nil {
		if f != nil {
			f.Close()
		}
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, want.Size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
		f.Close()
		return nil, &FormatError{File: path, Reason: fmt.Sprintf("sha256 %s, the index says %s (altered or damaged part)", got, want.SHA256)}
	}
	return f, nil
}

// multiReaderAt reads files laid end to end as one.
type multiReaderAt struct {
	parts []io.ReaderAt
	ends  []int64
	size  int64
}

func (m *multiReaderAt) add(r io.ReaderAt, size int64) {
	m.parts = append(m.parts, r)
	m.size += size
	m.ends = append(m.ends, m.size)
}

func (m *multiReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	n := 0
	for i, end := range m.ends {
		if len(p) == 0 {
			break
		}
		if off >= end {
			continue
		}
		start := end - m.partSize(i)
		k := min(int64(len(p)), end-off)
		got, err := m.parts[i].ReadAt(p[:k], off-start)
		n += got
		if err != nil && !(err == io.EOF && int64(got) == k) {
			return n, err
		}
		p, off = p[k:], off+k
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}

func (m *multiReaderAt) partSize(i int) int64 {
	if i == 0 {
		return m.ends[0]
	}
	return m.ends[i] - m.ends[i-1]
}

// checkParts checks the parts an index lists: at most MaxParts, each of a
// size in range and a sha256 of 64 hex digits.
func checkParts(parts []Part) error {
	if len(parts) > MaxParts {
		return fmt.Errorf("%d parts is over the limit of %d", len(parts), MaxParts)
	}
	for i, p := range parts {
		if p.Size < 1 || p.Size > MaxBlobSize || !hexRE.MatchString(p.SHA256) {
			return fmt.Errorf("part %d: size %d or sha256 %q out of range", i+1, p.Size, p.SHA256)
		}
	}
	return nil
}

// StatParts checks that every part of the split bundle whose first part
// is first is beside it with the size its index lists, without reading
// them (inspect; the importer checks each sha256 too).
func StatParts(first string, idx *Index) error {
	for i, want := range idx.Parts {
		path := PartPath(first, i+1)
		fi, err := os.Stat(path)
		if err := partSize(path, fi, err, want); err != nil {
			return err
		}
	}
	return nil
}

// partSize names a part that is missing (err from stat or open) or whose
// size is not the listed one.
func partSize(path string, fi os.FileInfo, err error, want Part) error {
	if errors.Is(err, os.ErrNotExist) {
		return &FormatError{File: path, Reason: "missing: every part of a split bundle must be beside the first"}
	}
	if err != nil {
		return err
	}
	if fi.Size() != want.Size {
		return &FormatError{File: path, Reason: fmt.Sprintf("%d bytes, the index says %d (short or damaged part)", fi.Size(), want.Size)}
	}
	return nil
}
