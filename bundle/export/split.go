package export

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/coldharbor/coldharbor/bundle"
)

// checkSplit refuses, before any blob is fetched, a split whose first part
// (index, head and layout) would not fit the part size, or that makes more
// parts than a reader accepts.
func checkSplit(idx *bundle.Index, size int64) error {
	if size < bundle.MinPartSize {
		return fmt.Errorf("a part size of %d bytes is below the least of %d", size, bundle.MinPartSize)
	}
	n := (bundle.BlobSectionSize(idx.Members) + size - 1) / size
	if err := bundle.CheckLimit("parts", n, bundle.MaxParts, "choose a larger part size"); err != nil {
		return err
	}
	// The index with as many parts as the blobs will make, each listed at
	// its widest: an upper bound of part 0.
	probe := *idx
	probe.Parts = make([]bundle.Part, n)
	for i := range probe.Parts {
		probe.Parts[i] = bundle.Part{Size: size, SHA256: strings.Repeat("0", 64)}
	}
	raw, err := bundle.EncodeIndex(&probe)
	if err != nil {
		return err
	}
	return bundle.CheckLimit("bytes of the first part (index, head and layout)", bundle.HeadPartSize(raw, idx.Members), size,
		"choose a larger part size: the signer reads only the first part, so it holds the whole head")
}

// writeSplit writes the blob parts (1, 2, … through o.Part), then lists
// them in the index and writes part 0 to w; it returns the final index.
func (c *collector) writeSplit(ctx context.Context, w io.Writer, idx *bundle.Index, raw []byte, head []bundle.File, o Options) ([]byte, error) {
	if o.Part == nil {
		return nil, fmt.Errorf("internal error: a split export needs a way to make parts")
	}
	pw := bundle.NewPartWriter(o.Split, o.Part)
	// The parts count into part 0's counter: one total, one progress.
	var body io.Writer = pw
	if cw, ok := w.(*countingWriter); ok {
		body = &countingWriter{w: pw, c: cw.c}
	}
	if err := c.writeBlobSection(ctx, bundle.NewBlobWriter(body, idx), o); err != nil {
		pw.Close()
		return nil, err
	}
	parts, err := pw.Close()
	if err != nil {
		return nil, fmt.Errorf("finishing the last part: %w", err)
	}
	idx.Parts = parts
	if raw, err = bundle.EncodeIndex(idx); err != nil {
		return nil, err
	}
	hw, err := bundle.NewWriter(w, idx, raw)
	if err != nil {
		return nil, err
	}
	for _, f := range head {
		if err := hw.Write(f); err != nil {
			return nil, err
		}
	}
	return raw, hw.EndHead()
}
