package bundle_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coldharbor/coldharbor/bundle"
)

// The fuzz targets below feed arbitrary bytes to every reader of what
// crosses the air gap. Each must return a value or an error, never panic,
// hang or allocate beyond its named limits; `make test` replays the seeds
// and anything committed under testdata/fuzz/.

func addTarSeeds(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, err := filepath.Glob(g)
		if err != nil {
			f.Fatal(err)
		}
		if len(files) == 0 {
			f.Fatalf("no seed matches %s", g)
		}
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// FuzzOpenBundle: the bundle reader (head, member scan, blob reads).
func FuzzOpenBundle(f *testing.F) {
	addTarSeeds(f, "../testdata/golden/bundle.tar", "../testdata/hostile/bundle/*.tar")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "bundle.tar")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := bundle.Open(path)
		if err != nil {
			if !bundle.IsFormatError(err) && !isDigestError(err) {
				t.Fatalf("Open: an error that is not a refusal: %v", err)
			}
			return
		}
		defer b.Close()
		for _, d := range b.Blobs() {
			if _, err := b.ReadBlob(d, bundle.MaxManifestSize); err != nil && !bundle.IsFormatError(err) && !isDigestError(err) {
				t.Fatalf("ReadBlob %s: %v", d, err)
			}
		}
	})
}

// FuzzReadHead: the small head sign and inspect read.
func FuzzReadHead(f *testing.F) {
	addTarSeeds(f, "../testdata/golden/bundle.tar", "../testdata/hostile/bundle/*.tar")
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := bundle.ReadHead(bytes.NewReader(data), "fuzz.tar"); err != nil && !bundle.IsFormatError(err) {
			t.Fatalf("ReadHead: an error that is not a refusal: %v", err)
		}
	})
}

// FuzzReadApproval: the approval reader.
func FuzzReadApproval(f *testing.F) {
	addTarSeeds(f, "../testdata/golden/approval.tar", "../testdata/hostile/bundle/not-a-tar.tar")
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := bundle.ReadApproval(bytes.NewReader(data), "fuzz.tar"); err != nil && !bundle.IsFormatError(err) {
			t.Fatalf("ReadApproval: an error that is not a refusal: %v", err)
		}
	})
}

// FuzzReadRefresh: the refresh bundle reader.
func FuzzReadRefresh(f *testing.F) {
	for _, snap := range [][]byte{nil, refreshSnapshot} {
		var buf bytes.Buffer
		if err := bundle.WriteRefresh(&buf, "test", time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC), snap, refreshTimestamp); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := bundle.ReadRefresh(bytes.NewReader(data), "fuzz.tar"); err != nil && !bundle.IsFormatError(err) {
			t.Fatalf("ReadRefresh: an error that is not a refusal: %v", err)
		}
	})
}
