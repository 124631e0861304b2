package bundle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/trust"
)

// TestExportImagesLimitFailsFast: more images than a bundle may hold is
// refused before any image is resolved (the sources here do not exist),
// naming the limit and the way around it.
func TestExportImagesLimitFailsFast(t *testing.T) {
	w := newWorld(t)
	o := w.exportOptions()
	o.Images = nil
	for i := range bundle.MaxImages + 1 {
		o.Images = append(o.Images, export.ImageSpec{Source: fmt.Sprintf("127.0.0.1:1/absent/image:%d", i)})
	}
	start := time.Now()
	var buf bytes.Buffer
	_, err := export.Write(context.Background(), &buf, o)
	if !errors.Is(err, bundle.ErrLimit) || !strings.Contains(err.Error(), "10001 images in one bundle is over the limit of 10000: export them in several bundles") {
		t.Fatalf("Export of %d images: %v; want the images limit", len(o.Images), err)
	}
	if d := time.Since(start); d > 5*time.Second || buf.Len() != 0 {
		t.Errorf("refused after %s, %d bytes written: want at once, nothing written", d, buf.Len())
	}
}

// bigTargets signs and records in dir a targets version holding filler
// targets until it is about size bytes.
func bigTargets(t testing.TB, dir string, key *hsm.Key, size int) int {
	t.Helper()
	st, err := trust.LoadState(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	next := trust.NextTargets(st.Targets, signNow, 90*24*time.Hour)
	custom := json.RawMessage(fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","bundle":"%s"}`, strings.Repeat("0", 64)))
	add := func(from, to int) {
		for n := from; n < to; n++ {
			name := fmt.Sprintf("filler/image-%06d:1.0", n)
			next.Signed.Targets[name] = &metadata.TargetFiles{Length: 500, Hashes: metadata.Hashes{"sha256": bytes.Repeat([]byte{byte(n)}, 32)}, Custom: &custom, Path: name}
		}
	}
	// Measure 1,000 entries, then fill to size.
	add(0, 1000)
	probe, err := next.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	n, per := 1000, len(probe)/1000
	for {
		raw, err := next.ToBytes(true)
		if err != nil {
			t.Fatal(err)
		}
		missing := size - len(raw) - 300 // its signature
		if missing < per {
			break
		}
		add(n, n+missing/per)
		n += missing / per
	}
	if err := trust.Sign(next, trust.Targets, key.Signer); err != nil {
		t.Fatal(err)
	}
	raw, err := next.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > trust.MaxTargetsSize {
		t.Fatalf("filler targets of %d bytes: over the limit already", len(raw))
	}
	if err := trust.Publish(context.Background(), dir, trust.Publication{Targets: next}); err != nil {
		t.Fatal(err)
	}
	return len(raw)
}

// TestTargetsSizeLimit: near go-tuf's 5,000,000-byte targets limit, the
// exporter refuses a bundle whose signed targets would pass it (before a
// blob is fetched), and the signer refuses to sign (and so to record) such
// a version for a bundle made against an older base.
func TestTargetsSizeLimit(t *testing.T) {
	w := newWorld(t)
	size := bigTargets(t, w.signer, w.targets, trust.MaxTargetsSize-1000)
	// The exporter's copy as the isolated side would publish it.
	exp := filepath.Join(t.TempDir(), "exporter-big")
	testfs.CopyDir(t, filepath.Join(w.signer, trust.MetadataDir), filepath.Join(exp, trust.MetadataDir))
	o := w.exportOptions()
	o.Repo = exp
	var buf bytes.Buffer
	_, err := export.Write(context.Background(), &buf, o)
	if !errors.Is(err, bundle.ErrLimit) || !strings.Contains(err.Error(), "bytes of signed targets metadata") || buf.Len() != 0 {
		t.Fatalf("export on %d bytes of targets: %v (%d bytes written); want the targets limit, nothing written", size, err, buf.Len())
	}
	// A bundle made against v1 (the exporter that never saw v2) rebases
	// onto the big v2 at the signer: refused, v3 not recorded.
	path, _ := w.export(t, w.exportOptions())
	p, err := w.plan(t, path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Sign(w.ctx, approve.Options{Keys: []*hsm.Key{w.targets}, Now: signNow, Tool: "test"})
	if !errors.Is(err, bundle.ErrLimit) || !strings.Contains(err.Error(), "bytes of targets v3") {
		t.Fatalf("Sign: %v; want the targets size refused", err)
	}
	if trust.HighestVersion(w.signer, trust.Targets) != 2 {
		t.Errorf("a refused signature left targets v%d", trust.HighestVersion(w.signer, trust.Targets))
	}
}

// TestSignerAfterRefusedApproval: a signer holding a version the isolated
// side refused can sign the next bundle. An over-limit version (as older
// signers recorded) is stepped over; with DiscardUnimported, a bundle on
// the published base drops what the refused approval added.
func TestSignerAfterRefusedApproval(t *testing.T) {
	w := newWorld(t)
	first, _ := w.export(t, w.exportOptions())
	p, res := w.sign(t, first)
	if err := p.Record(w.ctx, w.signer, res); err != nil { // v2: the isolated side refuses it
		t.Fatal(err)
	}
	// v3 over the client's limit, as a signer before this check recorded it.
	big := bytes.Repeat([]byte("x"), trust.MaxTargetsSize+1)
	if err := os.WriteFile(filepath.Join(w.signer, trust.MetadataDir, "3.targets.json"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	o := w.exportOptions()
	o.Images = []export.ImageSpec{{Source: w.src(testimages.AppOne), Name: "demo/next:1.0"}}
	second, _ := w.export(t, o)
	f, err := os.Open(second)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err = approve.MakePlanWith(w.ctx, f, second, w.signer, approve.PlanOptions{DiscardUnimported: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.NewVersion != 4 || p.Current != 2 || p.Rebased || strings.Join(p.Discarded, ",") != "apps/two:1.0,demo/app-one:1.0,demo/multiarch:1.0" {
		t.Fatalf("plan: current v%d, new v%d, rebased %v, discarded %v", p.Current, p.NewVersion, p.Rebased, p.Discarded)
	}
	res, err = p.Sign(w.ctx, approve.Options{Keys: []*hsm.Key{w.targets}, Now: signNow, Tool: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Record(w.ctx, w.signer, res); err != nil {
		t.Fatalf("Record after a refused approval: %v", err)
	}
	st, err := trust.LoadState(w.ctx, w.signer)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range st.Targets.Signed.Targets {
		names = append(names, n)
	}
	if st.Targets.Signed.Version != 4 || len(names) != 2 || st.Targets.Signed.Targets["demo/next:1.0"] == nil {
		t.Errorf("signer now at targets v%d with %v; want v4 with demo/next:1.0 and cosign.pub", st.Targets.Signed.Version, names)
	}
}
