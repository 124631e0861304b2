package mirror

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

// TestImportSplitBundle: import takes a split bundle's first part and finds
// the rest beside it; the signer signs the first part alone. A missing part
// is named before anything is pushed or published.
func TestImportSplitBundle(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil { // the setup's first bundle, signed before ours
		t.Fatal(err)
	}
	first := s.path("split.tar" + bundle.FirstPartSuffix)
	var part0 bytes.Buffer
	o := export.Options{Repo: s.signer, Destination: s.dest, Images: []export.ImageSpec{{Source: s.srcHost + "/" + testimages.AppTwo}},
		Split: 24 << 10, Part: func(n int) (io.WriteCloser, error) { return os.Create(bundle.PartPath(first, n)) }}
	res, err := export.Write(ctx, &part0, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(first, part0.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if len(res.Index.Parts) == 0 {
		t.Fatal("not split")
	}
	p, err := approve.MakePlan(ctx, bytes.NewReader(part0.Bytes()), first, s.signer)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := p.Sign(ctx, approve.Options{Keys: []*hsm.Key{s.targets}})
	if err != nil {
		t.Fatal(err)
	}
	approval := s.path("split-approval.tar")
	os.WriteFile(approval, signed.Approval, 0o644)
	last := bundle.PartPath(first, len(res.Index.Parts))
	hidden := last + ".away"
	os.Rename(last, hidden)
	before := testfs.TreeHash(t, s.path("isolated"), "lock")
	if _, err := s.importPair(first, approval); err == nil || !strings.Contains(err.Error(), last) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("import with the last part away: %v; want it named as missing", err)
	}
	if testfs.TreeHash(t, s.path("isolated"), "lock") != before {
		t.Fatal("a refused import changed the repository")
	}
	os.Rename(hidden, last)
	got, err := s.importPair(first, approval)
	if err != nil {
		t.Fatalf("import of the split bundle: %v", err)
	}
	if len(got.Images) != 1 || got.Manifests != 1 || got.BlobsPushed+got.BlobsSkipped != 3 {
		t.Errorf("import result %+v", got)
	}
}
