package bundle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/trust"
)

// TestExportPlatform: with Platform linux/arm64 the multi-arch index
// becomes one target, the arm64 image manifest, and the bundle holds that
// image's manifest, config and layer and nothing of the index or amd64.
func TestExportPlatform(t *testing.T) {
	w := newWorld(t)
	ii := w.fix.Indexes[testimages.MultiArch]
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var arm64 v1.Descriptor
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Architecture == "arm64" {
			arm64 = d
		}
	}
	img, err := ii.Image(arm64.Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	wantBlobs := []string{bundle.BlobName(arm64.Digest.String()), bundle.BlobName(m.Config.Digest.String())}
	for _, l := range m.Layers {
		wantBlobs = append(wantBlobs, bundle.BlobName(l.Digest.String()))
	}

	o := w.exportOptions()
	o.Images = []export.ImageSpec{{Source: w.src(testimages.MultiArch)}}
	o.Platform = &v1.Platform{OS: "linux", Architecture: "arm64"}
	path, res := w.export(t, o)
	if len(res.Index.Images) != 1 {
		t.Fatalf("%d images, want 1", len(res.Index.Images))
	}
	got := res.Index.Images[0]
	want := bundle.Image{Name: testimages.MultiArch, Source: w.src("demo/multiarch") + "@" + arm64.Digest.String(), Digest: arm64.Digest.String(),
		MediaType: string(types.OCIManifestSchema1), Size: arm64.Size, Platforms: []string{"linux/arm64"}, Payload: "head/payloads/0.json"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("image:\n%+v\nwant:\n%+v", got, want)
	}
	var blobs []string
	for _, mm := range res.Index.Members {
		if strings.HasPrefix(mm.Name, "oci/blobs/") {
			blobs = append(blobs, mm.Name)
		}
	}
	if !slices.Equal(blobs, wantBlobs) {
		t.Errorf("blobs:\n%v\nwant the arm64 manifest, config and layer:\n%v", blobs, wantBlobs)
	}
	if res.Manifests != 1 || res.Blobs != 2 {
		t.Errorf("%d manifests and %d blobs, want 1 and 2", res.Manifests, res.Blobs)
	}
	// The pending targets pin the arm64 manifest under the index's name.
	pending := pendingOf(t, path)
	tf := pending.Signed.Targets[testimages.MultiArch]
	if tf == nil || "sha256:"+tf.Hashes["sha256"].String() != arm64.Digest.String() || tf.Length != arm64.Size {
		t.Errorf("pending target %s: %+v, want the arm64 manifest", testimages.MultiArch, tf)
	}
}

func pendingOf(t testing.TB, path string) *metadata.Metadata[metadata.TargetsType] {
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
	m, err := metadata.Targets().FromBytes(h.Pending)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestExportRename: SRC=REPOSITORY:TAG names the target; the payload, the
// layout annotation and the pending targets all use the new name, and the
// source keeps the old one.
func TestExportRename(t *testing.T) {
	w := newWorld(t)
	o := w.exportOptions()
	o.Images = []export.ImageSpec{{Source: w.src(testimages.AppTwo), Name: "apps/two:1.0"}}
	path, res := w.export(t, o)
	img := res.Index.Images[0]
	d := w.digests[testimages.AppTwo].String()
	if img.Name != "apps/two:1.0" || img.Digest != d || img.Source != w.src("demo/app-two")+"@"+d {
		t.Errorf("image %+v", img)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := bundle.ReadHead(f, path)
	if err != nil {
		t.Fatal(err)
	}
	wantPayload := `{"critical":{"identity":{"docker-reference":"` + testDest + `/apps/two"},"image":{"docker-manifest-digest":"` + d + `"},"type":"cosign container image signature"},"optional":null}`
	if got := string(h.Payloads[img.Payload]); got != wantPayload {
		t.Errorf("payload:\n%s\nwant:\n%s", got, wantPayload)
	}
	pending := pendingOf(t, path)
	if _, ok := pending.Signed.Targets["apps/two:1.0"]; !ok || len(pending.Signed.Targets) != 1 {
		t.Errorf("pending targets %v, want only apps/two:1.0", slices.Sorted(mapKeys(pending.Signed.Targets)))
	}
	if pending.Signed.Version != 2 {
		t.Errorf("pending targets v%d, want v2", pending.Signed.Version)
	}
}

func TestParseImageArg(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want export.ImageSpec
		err  string
	}{
		{"reg.example/demo/app:1.0", export.ImageSpec{Source: "reg.example/demo/app:1.0"}, ""},
		{"reg.example/demo/app:1.0=apps/app:2", export.ImageSpec{Source: "reg.example/demo/app:1.0", Name: "apps/app:2"}, ""},
		{"reg.example/demo/app@sha256:" + strings.Repeat("a", 64) + "=apps/app:2", export.ImageSpec{Source: "reg.example/demo/app@sha256:" + strings.Repeat("a", 64), Name: "apps/app:2"}, ""},
		{"=apps/app:2", export.ImageSpec{}, "no source reference"},
		{"reg.example/demo/app:1.0=Apps/App:2", export.ImageSpec{}, "invalid image name"},
		{"reg.example/demo/app:1.0=apps/app", export.ImageSpec{}, "invalid image name"},
		{"reg.example/demo/app:1.0=../app:1", export.ImageSpec{}, "invalid image name"},
		{"reg.example/demo/app", export.ImageSpec{}, `image "reg.example/demo/app"`}, // strict: no implicit latest
		{"not a reference", export.ImageSpec{}, `image "not a reference"`},
	} {
		got, err := export.ParseImageArg(c.arg)
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("ParseImageArg(%q) = %+v, %v; want %+v", c.arg, got, err, c.want)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("ParseImageArg(%q) = %+v, %v; want an error containing %q", c.arg, got, err, c.err)
		}
	}
}

// TestExportRefusals: exports that must fail, each before writing a byte
// (Export writes nothing until every image has resolved).
func TestExportRefusals(t *testing.T) {
	w := newWorld(t)
	appOne := w.digests[testimages.AppOne].String()
	cases := []struct {
		name string
		edit func(o *export.Options)
		err  string
	}{
		{"duplicate target names", func(o *export.Options) {
			o.Images = []export.ImageSpec{{Source: w.src(testimages.AppOne)}, {Source: w.src(testimages.AppTwo), Name: testimages.AppOne}}
		}, "both become demo/app-one:1.0: rename one with SRC=REPOSITORY:TAG"},
		{"the same source twice", func(o *export.Options) {
			o.Images = []export.ImageSpec{{Source: w.src(testimages.AppOne)}, {Source: w.src(testimages.AppOne)}}
		}, "both become demo/app-one:1.0"},
		{"removal not in targets", func(o *export.Options) { o.Removals = []string{"demo/gone:1.0"} },
			"cannot remove demo/gone:1.0: no such target in targets v1"},
		{"removal not a target name", func(o *export.Options) { o.Removals = []string{"Demo/Gone"} }, `invalid image name "Demo/Gone"`},
		{"nothing to export", func(o *export.Options) { o.Images = nil }, "nothing to export"},
		{"destination with a scheme", func(o *export.Options) { o.Destination = "https://registry.internal" }, "want HOST[/PREFIX]"},
		{"digest with no name", func(o *export.Options) {
			o.Images = []export.ImageSpec{{Source: w.src("demo/app-one") + "@" + appOne}}
		}, "is a digest with no tag: name its target with"},
		{"image not in the registry", func(o *export.Options) { o.Images = []export.ImageSpec{{Source: w.src("demo/absent:1.0")}} },
			"resolving " + w.src("demo/absent:1.0")},
		{"platform the index lacks", func(o *export.Options) {
			o.Images = []export.ImageSpec{{Source: w.src(testimages.MultiArch)}}
			o.Platform = &v1.Platform{OS: "linux", Architecture: "s390x"}
		}, "has no linux/s390x image"},
		{"no repository", func(o *export.Options) { o.Repo = filepath.Join(t.TempDir(), "absent") }, "reading the TUF repository"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := w.exportOptions()
			c.edit(&o)
			var buf bytes.Buffer
			res, err := export.Write(context.Background(), &buf, o)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Export: %v (result %v); want an error containing %q", err, res != nil, c.err)
			}
			if buf.Len() != 0 {
				t.Errorf("a refused export wrote %d bytes", buf.Len())
			}
		})
	}
}

// TestExportBlobsOnce: a blob or manifest several images share is one
// member: the base layer of the two apps, and an image exported under two
// names.
func TestExportBlobsOnce(t *testing.T) {
	w := newWorld(t)
	_, res := w.export(t, w.exportOptions())
	base := bundle.BlobName(w.fix.SharedBase.String())
	count := map[string]int{}
	for _, m := range res.Index.Members {
		count[m.Name]++
	}
	if count[base] != 1 {
		t.Errorf("the shared base layer is listed %d times, want once", count[base])
	}
	for n, c := range count {
		if c != 1 {
			t.Errorf("%s listed %d times", n, c)
		}
	}
	// 5 manifests (the index, its 2 children, 2 apps); 9 other blobs (4
	// configs, 2 multi-arch layers, the shared base, 2 app layers).
	if res.Manifests != 5 || res.Blobs != 9 || res.SharedBlobs != 1 {
		t.Errorf("%d manifests, %d blobs, %d shared; want 5, 9, 1", res.Manifests, res.Blobs, res.SharedBlobs)
	}

	o := w.exportOptions()
	o.Images = []export.ImageSpec{{Source: w.src(testimages.AppOne)}, {Source: w.src(testimages.AppOne), Name: "apps/one:1.0"}}
	_, res = w.export(t, o)
	if res.Manifests != 1 || res.Blobs != 3 || len(res.Index.Images) != 2 {
		t.Errorf("one image under two names: %d manifests, %d blobs, %d images; want 1, 3, 2", res.Manifests, res.Blobs, len(res.Index.Images))
	}
	a, b := res.Index.Images[0], res.Index.Images[1]
	if a.Digest != b.Digest || !slices.Equal(a.Platforms, b.Platforms) || a.Payload == b.Payload {
		t.Errorf("the same image under two names: %+v and %+v", a, b)
	}
}

// TestExportDeterministic: the same images, repository and clock give the
// same bytes, and the result describes the file written.
func TestExportDeterministic(t *testing.T) {
	w := newWorld(t)
	var last [2]int64
	calls := 0
	o := w.exportOptions()
	o.Progress = func(done, total int64) {
		if done < last[0] {
			t.Errorf("progress went back from %d to %d", last[0], done)
		}
		if calls > 0 && total != last[1] {
			t.Errorf("progress total changed from %d to %d", last[1], total)
		}
		last = [2]int64{done, total}
		calls++
	}
	p1, r1 := w.export(t, o)
	p2, r2 := w.export(t, w.exportOptions())
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if !bytes.Equal(b1, b2) {
		t.Error("two exports of the same images differ")
	}
	if r1.Bytes != int64(len(b1)) || last[0] != r1.Bytes || calls == 0 {
		t.Errorf("result says %d bytes, progress ended at %d after %d calls; the file has %d", r1.Bytes, last[0], calls, len(b1))
	}
	idx := readTar(t, b1)[0].Data
	if r1.IndexSHA256 != sha256Hex(idx) || r2.IndexSHA256 != r1.IndexSHA256 {
		t.Errorf("result index sha256 %s, the index member's is %s", r1.IndexSHA256, sha256Hex(idx))
	}
	var decoded bundle.Index
	if err := json.Unmarshal(idx, &decoded); err != nil || !reflect.DeepEqual(&decoded, r1.Index) {
		t.Errorf("result index is not the index written (%v)", err)
	}
	if r1.Index.Created != exportNow || r1.Index.Tool != "test" || r1.Index.Base != (bundle.Base{RootVersion: 1, TargetsVersion: 1}) {
		t.Errorf("index header %+v", r1.Index)
	}
}

// TestExportRemovals: once a target is signed and the exporter's copy has
// it, a bundle may remove it; the plan shows the removal and the signed
// targets lack it. A name both exported and removed is refused.
func TestExportRemovals(t *testing.T) {
	w := newWorld(t)
	first, _ := w.export(t, w.exportOptions())
	p, sr := w.sign(t, first)
	if err := p.Record(w.ctx, w.signer, sr); err != nil {
		t.Fatal(err)
	}
	testfs.CopyDir(t, filepath.Join(w.signer, trust.MetadataDir), filepath.Join(w.exporter, trust.MetadataDir))

	o := w.exportOptions()
	o.Images = []export.ImageSpec{{Source: w.src(testimages.AppTwo), Name: "apps/two:1.0"}}
	o.Removals = []string{"apps/two:1.0"}
	if _, err := export.Write(w.ctx, &bytes.Buffer{}, o); err == nil || !strings.Contains(err.Error(), "apps/two:1.0 is both exported and removed") {
		t.Errorf("exporting and removing one name: %v", err)
	}

	o.Images = nil
	path, res := w.export(t, o)
	if !slices.Equal(res.Index.Removals, []string{"apps/two:1.0"}) || len(res.Index.Images) != 0 || res.Index.Base.TargetsVersion != 2 {
		t.Fatalf("index: removals %v, %d images, base %+v", res.Index.Removals, len(res.Index.Images), res.Index.Base)
	}
	pending := pendingOf(t, path)
	if _, ok := pending.Signed.Targets["apps/two:1.0"]; ok || pending.Signed.Version != 3 {
		t.Errorf("pending targets v%d still hold apps/two:1.0: %v", pending.Signed.Version, ok)
	}
	p2, sr2 := w.sign(t, path)
	if len(p2.Changes) != 1 || p2.Changes[0].Kind != "removed" || p2.Changes[0].Name != "apps/two:1.0" ||
		p2.Changes[0].OldDigest != w.digests[testimages.AppTwo].String() || p2.Rebased {
		t.Errorf("plan %+v", p2)
	}
	af, err := bundle.ReadApproval(bytes.NewReader(sr2.Approval), "approval.tar")
	if err != nil {
		t.Fatal(err)
	}
	targets, err := metadata.Targets().FromBytes(af.Targets)
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(mapKeys(targets.Signed.Targets))
	if want := []string{"cosign.pub", "demo/app-one:1.0", "demo/multiarch:1.0"}; !slices.Equal(names, want) || targets.Signed.Version != 3 || len(af.Approval.Signatures) != 0 {
		t.Errorf("targets v%d %v with %d signatures; want v3 %v and none", targets.Signed.Version, names, len(af.Approval.Signatures), want)
	}
}
