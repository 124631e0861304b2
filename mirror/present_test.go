package mirror

import (
	"bytes"
	"context"
	"errors"
	"net/http"
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

// differential exports images under new tags with Since pointing at the
// isolated side's published repository, signs it and returns its files.
func (s *setup) differential(t *testing.T, name string, specs []export.ImageSpec) (string, string, *export.Result) {
	ctx := context.Background()
	var buf bytes.Buffer
	res, err := export.Write(ctx, &buf, export.Options{Repo: s.signer, Destination: s.dest, Images: specs, Since: s.path("isolated")})
	if err != nil {
		t.Fatal(err)
	}
	b := s.path(name + ".tar")
	os.WriteFile(b, buf.Bytes(), 0o644)
	p, err := approve.MakePlan(ctx, bytes.NewReader(buf.Bytes()), b, s.signer)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := p.Sign(ctx, approve.Options{Keys: []*hsm.Key{s.targets}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Record(ctx, s.signer, signed); err != nil {
		t.Fatal(err)
	}
	a := s.path(name + "-approval.tar")
	os.WriteFile(a, signed.Approval, 0o644)
	return b, a, res
}

// TestDifferentialBundle: after the first import, a bundle of the same
// images under new tags, exported --since the published repository,
// carries no layer or config (only manifests) and imports; one whose
// expected blobs the registry lacks is refused, naming them, with nothing
// pushed and nothing published.
func TestDifferentialBundle(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	specs := []export.ImageSpec{
		{Source: s.srcHost + "/" + testimages.AppOne, Name: "demo/app-one:2.0"},
		{Source: s.srcHost + "/" + testimages.MultiArch, Name: "demo/multiarch:2.0"},
	}
	b, a, res := s.differential(t, "diff", specs)
	if res.Present == 0 || res.Blobs != 0 {
		t.Fatalf("differential bundle: %d blobs carried, %d left out; want none carried", res.Blobs, res.Present)
	}
	full, _ := s.makeBundleUnsigned(t, "full", testimages.AppOne, testimages.MultiArch)
	fi, _ := os.Stat(full)
	di, _ := os.Stat(b)
	t.Logf("differential bundle %d bytes, full %d bytes; %d blobs left out", di.Size(), fi.Size(), res.Present)
	got, err := s.importPair(b, a)
	if err != nil {
		t.Fatalf("import of the differential bundle: %v", err)
	}
	if got.BlobsExpected != res.Present || got.BlobsPushed != 0 {
		t.Errorf("import: %d blobs checked present, %d pushed; want %d, 0", got.BlobsExpected, got.BlobsPushed, res.Present)
	}
	// The registry loses one of them (it hides it): refused before any push.
	b2, a2, _ := s.differential(t, "diff2", []export.ImageSpec{{Source: s.srcHost + "/" + testimages.AppTwo, Name: "demo/app-two:3.0"}})
	head := readIndex(t, b2)
	hidden := head.Present[0].Digest
	inner := s.dst.h
	s.dst.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/blobs/"+hidden) || r.URL.Query().Get("mount") == hidden {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		inner.ServeHTTP(w, r)
	})
	before := testfs.TreeHash(t, s.path("isolated"), "lock")
	var puts int
	s.dst.failOn = func(r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			puts++
		}
		return false
	}
	s.dst.fail.Store(true)
	_, err = s.importPair(b2, a2)
	if !errors.Is(err, ErrAbsent) || !strings.Contains(err.Error(), hidden) {
		t.Fatalf("import with blob %s absent: %v; want ErrAbsent naming it", hidden, err)
	}
	if puts != 0 || testfs.TreeHash(t, s.path("isolated"), "lock") != before {
		t.Errorf("a refused differential import pushed %d manifests or changed the repository", puts)
	}
}

func readIndex(t *testing.T, path string) *bundle.Index {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := bundle.ReadHead(f, path)
	if err != nil {
		t.Fatal(err)
	}
	return h.Index
}
