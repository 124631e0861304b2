package bundle

import (
	"encoding/json"
	"fmt"
	"io"
)

// Writer writes a bundle: its index, then every member the index lists, in
// that order, each of the size listed (the reader refuses anything else).
type Writer struct {
	l *listedWriter
}

// EncodeIndex encodes idx as the index member, checked as a reader checks it.
func EncodeIndex(idx *Index) ([]byte, error) {
	raw, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := parseIndex(raw, "(export)"); err != nil {
		return nil, fmt.Errorf("internal error: the index we wrote does not parse: %w", err)
	}
	return raw, nil
}

// TarSize is the size of the bundle an index (raw, from EncodeIndex)
// describes: per member a 512-byte header and the data padded to 512
// bytes, and two zero blocks at the end.
func TarSize(raw []byte, listed []Member) int64 {
	total := tarBlocks(int64(len(raw))) + 1024
	for _, m := range listed {
		total += tarBlocks(m.Size)
	}
	return total
}

func tarBlocks(n int64) int64 { return 512 + (n+511)/512*512 }

// NewWriter writes the index (raw, from EncodeIndex) to w, dated idx.Created.
func NewWriter(w io.Writer, idx *Index, raw []byte) (*Writer, error) {
	l, err := newListedWriter(w, idx.Created, IndexName, raw, idx.Members)
	if err != nil {
		return nil, err
	}
	return &Writer{l: l}, nil
}

// EndHead ends part 0 of a split bundle after the head and layout members:
// it pads the last one and writes no end-of-archive blocks (the blob parts
// continue the tar).
func (w *Writer) EndHead() error {
	if len(w.l.rest) > 0 && memberKind(w.l.rest[0].Name) != "blob" {
		return fmt.Errorf("internal error: %s is listed and was not written", w.l.rest[0].Name)
	}
	return w.l.tw.tw.Flush()
}

// NewBlobWriter writes the blob members idx lists, and the end of the tar,
// to w: parts 1… of a split bundle, before part 0 (whose index lists their
// sha256) is written.
func NewBlobWriter(w io.Writer, idx *Index) *Writer {
	var blobs []Member
	for _, m := range idx.Members {
		if memberKind(m.Name) == "blob" {
			blobs = append(blobs, m)
		}
	}
	return &Writer{l: &listedWriter{tw: newTarWriter(w, idx.Created), rest: blobs}}
}

// Write writes the member the index lists next.
func (w *Writer) Write(f File) error { return w.l.write(f) }

// Stream copies the member the index lists next, of size bytes, from r.
func (w *Writer) Stream(name string, size int64, r io.Reader) error {
	return w.l.stream(name, size, r)
}

// Close ends the tar, refusing when a listed member was not written.
func (w *Writer) Close() error { return w.l.close() }

// PayloadMember is the head member holding image i's cosign payload.
func PayloadMember(i int) string { return fmt.Sprintf("%s%d.json", headPayloadPrefx, i) }

// HeadRootMember is the head member holding root version v.
func HeadRootMember(v int64) string { return fmt.Sprintf("%s%d.root.json", headRootPrefix, v) }
