package bundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/ceremony"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

// update rewrites the committed vectors (goldenDir, hostileDir)
// from the code: go test ./bundle -run 'Golden|HostileFiles' -update
var update = flag.Bool("update", false, "rewrite ../testdata/golden and ../testdata/hostile/bundle")

// Fixed clocks, so the bundles and approvals the tests make carry the same
// times on every run. The ceremony happens before the export, which happens
// before the signature.
var (
	ceremonyNow = time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)
	exportNow   = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	signNow     = time.Date(2026, 1, 2, 11, 0, 0, 0, time.UTC)
)

// testDest is the destination every test bundle names: a fixed host, so
// payloads do not depend on the port of the source registry.
const testDest = "registry.internal:5000/mirror"

// world is one side-by-side setup: a source registry holding
// testimages.New(1), a signer's TUF repository made by a 1-of-1 ceremony,
// and the exporter's copy of it (taken right after the ceremony).
type world struct {
	ctx      context.Context
	host     string // source registry, HOST:PORT on 127.0.0.1
	fix      testimages.Fixture
	digests  map[string]v1.Hash
	targets  *hsm.Key // the targets key (also the cosign key)
	signer   string   // the signer's repository
	exporter string   // the exporter's copy
}

// newWorld starts go-containerregistry's in-process registry (plain HTTP on
// 127.0.0.1), pushes the seed-1 fixture into it, and holds a ceremony.
func newWorld(t testing.TB) *world {
	t.Helper()
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	w := &world{ctx: ctx, host: strings.TrimPrefix(srv.URL, "http://")}
	var err error
	if w.fix, err = testimages.New(1); err != nil {
		t.Fatal(err)
	}
	if w.digests, err = testimages.Push(ctx, w.host, w.fix); err != nil {
		t.Fatal(err)
	}
	w.signer = filepath.Join(t.TempDir(), "signer")
	w.targets = ceremonyRepo(t, w.signer)
	w.exporter = filepath.Join(t.TempDir(), "exporter")
	testfs.CopyDir(t, filepath.Join(w.signer, trust.MetadataDir), filepath.Join(w.exporter, trust.MetadataDir))
	return w
}

// ceremonyRepo creates a repository in dir with a 1-of-1 root and every
// online key present (so snapshot and timestamp v1 exist), and returns its
// targets key.
func ceremonyRepo(t testing.TB, dir string) *hsm.Key {
	t.Helper()
	targets := testkeys.New(t, "targets.key")
	_, err := ceremony.Init(context.Background(), ceremony.InitOptions{
		Dir:              dir,
		RootKeys:         []*hsm.Key{testkeys.New(t, "root.key")},
		RootThreshold:    1,
		TargetsKeys:      []*hsm.Key{targets},
		TargetsThreshold: 1,
		SnapshotKey:      testkeys.New(t, "snapshot.key"),
		TimestampKey:     testkeys.New(t, "timestamp.key"),
		Now:              ceremonyNow,
		Tool:             "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return targets
}

// src is the source reference of a fixture name.
func (w *world) src(n string) string { return w.host + "/" + n }

// defaultImages is what the standard test bundle holds: the multi-arch
// index, the two apps sharing a base layer, the second one renamed.
func (w *world) defaultImages() []export.ImageSpec {
	return []export.ImageSpec{
		{Source: w.src(testimages.MultiArch)},
		{Source: w.src(testimages.AppOne)},
		{Source: w.src(testimages.AppTwo), Name: "apps/two:1.0"},
	}
}

// exportOptions are the options of the standard bundle: the exporter's
// repository, a fixed clock, Tool "test".
func (w *world) exportOptions() export.Options {
	return export.Options{Repo: w.exporter, Destination: testDest, Images: w.defaultImages(), Now: exportNow, Tool: "test"}
}

// export writes a bundle with o (see exportOptions) to a new bundle.tar and
// checks it with validateBundle.
func (w *world) export(t testing.TB, o export.Options) (string, *export.Result) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bundle.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := export.Write(w.ctx, f, o)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	validateBundle(t, path)
	return path, res
}

// plan is MakePlan over the file at path against the signer's repository.
func (w *world) plan(t testing.TB, path string) (*approve.Plan, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return approve.MakePlan(w.ctx, f, path, w.signer)
}

// sign plans and signs the bundle at path with the targets key and returns
// the plan and the result (whose Approval holds the approval.tar bytes).
func (w *world) sign(t testing.TB, path string) (*approve.Plan, *approve.Result) {
	t.Helper()
	p, err := w.plan(t, path)
	if err != nil {
		t.Fatalf("MakePlan: %v", err)
	}
	res, err := p.Sign(w.ctx, approve.Options{Keys: []*hsm.Key{w.targets}, Now: signNow, Tool: "test"})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if _, err := bundle.ReadApproval(bytes.NewReader(res.Approval), "approval.tar"); err != nil {
		t.Fatalf("the approval Sign wrote does not read back: %v", err)
	}
	return p, res
}

// tarEntry is one member of a tar as the tests rewrite it.
type tarEntry struct {
	Hdr  tar.Header
	Data []byte
}

// readTar parses data as a tar with archive/tar alone (not the package
// under test) and returns its members in order.
func readTar(t testing.TB, data []byte) []tarEntry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading tar member %s: %v", h.Name, err)
		}
		out = append(out, tarEntry{Hdr: *h, Data: body})
	}
}

// writeTar writes entries as a tar. A regular entry whose Data is shorter
// than Hdr.Size ends the output right there (a truncated file, written
// without allocating the declared size); otherwise the tar is closed.
func writeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing tar header %s: %v", h.Name, err)
		}
		if len(e.Data) > 0 {
			if _, err := tw.Write(e.Data); err != nil {
				t.Fatalf("writing tar member %s: %v", h.Name, err)
			}
		}
		if h.Typeflag == tar.TypeReg && int64(len(e.Data)) < h.Size {
			return buf.Bytes() // truncated on purpose
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// regular is a member header as Export writes them.
func regular(name string, size int64) tar.Header {
	return tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: exportNow, Format: tar.FormatPAX}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// layoutEntry is where one member of a bundle file lies: its header, its
// data and the padding up to the next 512-byte block.
type layoutEntry struct {
	Name                        string
	HeaderOff, DataOff, DataEnd int64
}

// tarLayout returns the offsets of every member of the tar in data.
func tarLayout(t testing.TB, data []byte) []layoutEntry {
	t.Helper()
	r := bytes.NewReader(data)
	tr := tar.NewReader(r)
	var out []layoutEntry
	var prevEnd int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		off := int64(len(data)) - int64(r.Len()) // archive/tar reads headers exactly
		hdrOff := prevEnd
		if rem := hdrOff % 512; rem != 0 {
			hdrOff += 512 - rem
		}
		out = append(out, layoutEntry{Name: h.Name, HeaderOff: hdrOff, DataOff: off, DataEnd: off + h.Size})
		if _, err := io.Copy(io.Discard, tr); err != nil {
			t.Fatal(err)
		}
		prevEnd = off + h.Size
	}
}

// validateBundle checks a bundle written by Export: the tar, read with
// archive/tar alone, is the index followed by exactly the members it lists,
// in order, each a 0644 regular file with the index's size and sha256 and
// the creation time; Open accepts it and every blob reads back with its
// digest; and the oci/ part is an OCI image layout that go-containerregistry
// reads and validates in full.
func validateBundle(t testing.TB, path string) *bundle.Index {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries := readTar(t, data)
	if len(entries) == 0 || entries[0].Hdr.Name != bundle.IndexName {
		t.Fatalf("%s: first member is not %s", path, bundle.IndexName)
	}
	var idx bundle.Index
	if err := json.Unmarshal(entries[0].Data, &idx); err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(idx.Members)+1 {
		t.Fatalf("%s: %d members after the index, it lists %d", path, len(entries)-1, len(idx.Members))
	}
	for i, e := range entries {
		h := e.Hdr
		if h.Typeflag != tar.TypeReg || h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(idx.Created) {
			t.Errorf("member %s: type %q mode %o uid %d gid %d mtime %v; want a 0644 regular file owned by 0:0 at %v",
				h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime, idx.Created)
		}
		if i == 0 {
			continue
		}
		m := idx.Members[i-1]
		if h.Name != m.Name || int64(len(e.Data)) != m.Size || sha256Hex(e.Data) != m.SHA256 {
			t.Errorf("member %d is %s (%d bytes, sha256 %s); the index lists %s (%d bytes, sha256 %s)",
				i, h.Name, len(e.Data), sha256Hex(e.Data), m.Name, m.Size, m.SHA256)
		}
	}

	b, err := bundle.Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	defer b.Close()
	if b.Head.IndexSHA256 != sha256Hex(entries[0].Data) {
		t.Errorf("Head.IndexSHA256 %s, the index member's sha256 is %s", b.Head.IndexSHA256, sha256Hex(entries[0].Data))
	}
	readAllBlobs(t, b)

	// The oci/ part, unpacked, is an image layout other tools read.
	dir := t.TempDir()
	for _, e := range entries {
		rel, ok := strings.CutPrefix(e.Hdr.Name, "oci/")
		if !ok {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, e.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("the oci/ part is not an image layout: %v", err)
	}
	checkLayoutIndex(t, ii, 0)
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != len(idx.Images) {
		t.Errorf("oci/index.json lists %d manifests, the bundle %d images", len(im.Manifests), len(idx.Images))
	}
	for i, d := range im.Manifests {
		if i < len(idx.Images) && (d.Digest.String() != idx.Images[i].Digest || d.Annotations["org.opencontainers.image.ref.name"] != idx.Images[i].Name) {
			t.Errorf("oci/index.json entry %d is %s named %q; image %d is %s %s", i, d.Digest, d.Annotations["org.opencontainers.image.ref.name"], i, idx.Images[i].Name, idx.Images[i].Digest)
		}
	}
	return &idx
}

// checkLayoutIndex walks an index read from an image layout as another
// tool would: every child manifest, config and layer is there and matches
// its descriptor's digest and size.
func checkLayoutIndex(t testing.TB, ii v1.ImageIndex, depth int) {
	t.Helper()
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := ii.ImageIndex(d.Digest)
			if err != nil {
				t.Fatalf("layout index %s: %v", d.Digest, err)
			}
			checkManifestBytes(t, d, child.RawManifest)
			checkLayoutIndex(t, child, depth+1)
		case d.MediaType.IsImage():
			img, err := ii.Image(d.Digest)
			if err != nil {
				t.Fatalf("layout image %s: %v", d.Digest, err)
			}
			checkManifestBytes(t, d, img.RawManifest)
			if _, err := img.ConfigFile(); err != nil {
				t.Fatalf("layout image %s: config: %v", d.Digest, err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			for _, ld := range append([]v1.Descriptor{m.Config}, m.Layers...) {
				l, err := img.LayerByDigest(ld.Digest)
				if err != nil {
					if ld.Digest == m.Config.Digest {
						raw, err := img.RawConfigFile()
						if err != nil || "sha256:"+sha256Hex(raw) != ld.Digest.String() || int64(len(raw)) != ld.Size {
							t.Fatalf("layout image %s: config blob %s does not match (%v)", d.Digest, ld.Digest, err)
						}
						continue
					}
					t.Fatalf("layout image %s: layer %s: %v", d.Digest, ld.Digest, err)
				}
				rc, err := l.Compressed()
				if err != nil {
					t.Fatalf("layout blob %s: %v", ld.Digest, err)
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || "sha256:"+sha256Hex(data) != ld.Digest.String() || int64(len(data)) != ld.Size {
					t.Fatalf("layout blob %s: %d bytes, sha256 %s, err %v; descriptor says %d bytes", ld.Digest, len(data), sha256Hex(data), err, ld.Size)
				}
			}
		default:
			t.Fatalf("layout index lists %s of media type %s", d.Digest, d.MediaType)
		}
	}
}

func checkManifestBytes(t testing.TB, d v1.Descriptor, raw func() ([]byte, error)) {
	t.Helper()
	b, err := raw()
	if err != nil {
		t.Fatalf("layout manifest %s: %v", d.Digest, err)
	}
	if "sha256:"+sha256Hex(b) != d.Digest.String() || int64(len(b)) != d.Size {
		t.Fatalf("layout manifest %s: %d bytes with sha256 %s", d.Digest, len(b), sha256Hex(b))
	}
}

// readAllBlobs reads every blob of an opened bundle both ways (ReadBlob and
// BlobReader) and returns the first error; each must be a *DigestError if
// anything. Content read through both ways must agree.
func readAllBlobs(t testing.TB, b *bundle.Bundle) error {
	t.Helper()
	for _, d := range b.Blobs() {
		size, ok := b.HasBlob(d)
		if !ok {
			t.Fatalf("Blobs lists %s, HasBlob does not know it", d)
		}
		data, err := b.ReadBlob(d, bundle.MaxBlobSize)
		if err != nil {
			return err
		}
		if int64(len(data)) != size || "sha256:"+sha256Hex(data) != d {
			t.Fatalf("ReadBlob(%s) returned %d bytes with sha256 %s", d, len(data), sha256Hex(data))
		}
		rc, n, err := b.BlobReader(d)
		if err != nil {
			t.Fatal(err)
		}
		streamed, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || n != size || !bytes.Equal(streamed, data) {
			t.Fatalf("BlobReader(%s): %d bytes of %d, err %v", d, len(streamed), n, err)
		}
	}
	return nil
}

// noPanic runs f and turns a panic into a test failure with its stack.
func noPanic(t testing.TB, what string, f func() error) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v\n%s", what, r, debug.Stack())
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// wantFormatError checks err is a *bundle.FormatError whose message holds frag.
func wantFormatError(t testing.TB, what string, err error, frag string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted, want a format error containing %q", what, frag)
		return
	}
	if !bundle.IsFormatError(err) {
		t.Errorf("%s: %T %v, want a *bundle.FormatError", what, err, err)
		return
	}
	if !strings.Contains(err.Error(), frag) {
		t.Errorf("%s: %v\nwant a message containing %q", what, err, frag)
	}
}

// wantDigestError checks err is a *bundle.DigestError whose message holds frag.
func wantDigestError(t testing.TB, what string, err error, frag string) {
	t.Helper()
	var de *bundle.DigestError
	if !errors.As(err, &de) {
		t.Errorf("%s: %T %v, want a *bundle.DigestError", what, err, err)
		return
	}
	if !strings.Contains(err.Error(), frag) {
		t.Errorf("%s: %v\nwant a message containing %q", what, err, frag)
	}
}
