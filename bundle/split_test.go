package bundle_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/export"
)

// exportSplit writes the standard bundle cut into parts of size bytes in
// a new folder and returns the first part's path.
func (w *world) exportSplit(t testing.TB, size int64) (string, *export.Result) {
	t.Helper()
	dir := t.TempDir()
	first := filepath.Join(dir, "bundle.tar.000")
	f, err := os.Create(first)
	if err != nil {
		t.Fatal(err)
	}
	o := w.exportOptions()
	o.Split = size
	o.Part = func(n int) (io.WriteCloser, error) { return os.Create(bundle.PartPath(first, n)) }
	res, err := export.Write(w.ctx, f, o)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("split export: %v", err)
	}
	return first, res
}

// TestSplitBundle: a bundle cut into parts of 23 KiB. Each part is at most
// that size; the first holds only the index, head and layout (the signer
// needs nothing else); the parts concatenated are one valid bundle with
// the same ID; Open takes the first part, finds the rest and reads every
// blob; a missing, short or altered part is named by Open, before anything
// could be pushed.
func TestSplitBundle(t *testing.T) {
	w := newWorld(t)
	const size = 23 << 10
	first, res := w.exportSplit(t, size)
	parts := res.Index.Parts
	if len(parts) < 2 || res.Parts != len(parts)+1 {
		t.Fatalf("%d parts listed, result says %d files: want several at %d bytes", len(parts), res.Parts, size)
	}
	var whole []byte
	for i := 0; i <= len(parts); i++ {
		data, err := os.ReadFile(bundle.PartPath(first, i))
		if i == 0 {
			data, err = os.ReadFile(first)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > size {
			t.Errorf("part %d is %d bytes, over %d", i, len(data), size)
		}
		whole = append(whole, data...)
	}
	if int64(len(whole)) != res.Bytes {
		t.Errorf("parts hold %d bytes, the export wrote %d", len(whole), res.Bytes)
	}
	// The signer: only the first part, alone in a folder.
	alone := filepath.Join(t.TempDir(), "bundle.tar.000")
	copyFile(t, first, alone)
	p, err := w.plan(t, alone)
	if err != nil {
		t.Fatalf("plan from the first part alone: %v", err)
	}
	if p.IndexSHA256 != res.IndexSHA256 {
		t.Fatalf("the first part's bundle ID %s, export said %s", p.IndexSHA256, res.IndexSHA256)
	}
	// The parts concatenated: one bundle, the same ID.
	cat := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(cat, whole, 0o644); err != nil {
		t.Fatal(err)
	}
	validateBundle(t, cat)
	for _, path := range []string{first, cat} {
		b, err := bundle.Open(path)
		if err != nil {
			t.Fatalf("Open %s: %v", filepath.Base(path), err)
		}
		if err := readAllBlobs(t, b); err != nil {
			t.Fatalf("%s: %v", filepath.Base(path), err)
		}
		if b.Ref().IndexSHA256 != res.IndexSHA256 {
			t.Errorf("%s: bundle ID %s", filepath.Base(path), b.Ref().IndexSHA256)
		}
		b.Close()
	}
	damagedParts(t, first, parts)
}

// damagedParts: each way a part can go wrong is named by Open and StatParts.
func damagedParts(t *testing.T, first string, parts []bundle.Part) {
	cases := []struct {
		name   string
		damage func(dir string) string // returns the part that should be named
		stat   bool                    // StatParts (no hashing) sees it too
	}{
		{"missing", func(dir string) string { p := bundle.PartPath(dir, 2); os.Remove(p); return p }, true},
		{"short", func(dir string) string { p := bundle.PartPath(dir, 1); os.Truncate(p, parts[0].Size-1); return p }, true},
		{"altered", func(dir string) string {
			p := bundle.PartPath(dir, len(parts))
			data, _ := os.ReadFile(p)
			data[0] ^= 1
			os.WriteFile(p, data, 0o644)
			return p
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			copy0 := filepath.Join(dir, "bundle.tar.000")
			copyFile(t, first, copy0)
			for i := 1; i <= len(parts); i++ {
				copyFile(t, bundle.PartPath(first, i), bundle.PartPath(copy0, i))
			}
			named := c.damage(copy0)
			_, err := bundle.Open(copy0)
			if !bundle.IsFormatError(err) || !strings.Contains(err.Error(), named) || !strings.Contains(err.Error(), c.name) {
				t.Fatalf("Open with a %s part: %v; want a format error naming %s", c.name, err, filepath.Base(named))
			}
			b, _ := os.ReadFile(copy0)
			head, err := bundle.ReadHead(bytes.NewReader(b), copy0)
			if err != nil {
				t.Fatal(err)
			}
			if err := bundle.StatParts(copy0, head.Index); (err != nil) != c.stat {
				t.Errorf("StatParts with a %s part: %v", c.name, err)
			}
		})
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSplitLimits: a part size the first part cannot fit, or one below
// the least, is refused before any blob is fetched.
func TestSplitLimits(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		size int64
		want string
	}{
		{1024, "bytes of the first part (index, head and layout) is over the limit of 1024: choose a larger part size"},
		{512, "below the least of 1024"},
	} {
		o := w.exportOptions()
		o.Split = c.size
		made := 0
		o.Part = func(n int) (io.WriteCloser, error) { made++; return nopCloser{io.Discard}, nil }
		var buf bytes.Buffer
		_, err := export.Write(w.ctx, &buf, o)
		if err == nil || !strings.Contains(err.Error(), c.want) || made != 0 || buf.Len() != 0 {
			t.Errorf("split %d: %v (%d parts made, %d bytes written); want %q, nothing written", c.size, err, made, buf.Len(), c.want)
		}
		if c.size == 1024 && !errors.Is(err, bundle.ErrLimit) {
			t.Errorf("split %d: %v is not a limit error", c.size, err)
		}
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
