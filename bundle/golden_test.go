package bundle_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/trust"
)

// The golden vectors, under ../testdata/golden (testdata/README.md):
//
//	bundle.tar     the standard test bundle (newWorld + exportOptions)
//	approval.tar   its approval, signed with the targets key of repo/
//	index.json     the bundle's coldharbor-bundle.json, byte for byte
//	members.txt    "sha256 size name" of every member of bundle.tar, in order
//	approval.json  the approval's coldharbor-approval.json
//	plan.json      MakePlan of bundle.tar against repo/, as JSON
//	repo/metadata  the signer's published metadata at signing time (root,
//	               targets, snapshot and timestamp v1); no private key
//
// -update makes all of them anew (new keys, so new bytes).
const goldenDir = "../testdata/golden"

// goldenAttachDir holds the same set for the standard bundle with
// attachments (pushGoldenAttachments); its README.md states the outcome.
const goldenAttachDir = "../testdata/golden-attachments"

// hostileDir holds the committed hostile bundles, each with the outcome its
// README.md states and hostileFiles checks.
const hostileDir = "../testdata/hostile/bundle"

func TestGolden(t *testing.T) {
	if *update {
		writeGolden(t, goldenDir, nil)
	}
	checkGolden(t, goldenDir, nil)
}

// TestGoldenAttachments checks ../testdata/golden-attachments the way
// TestGolden checks golden/: the standard bundle, but app-one carries a
// vendor's cosign .sig, .sbom and .att (goldenAttachments), listed in the
// index and copied into its signed target's custom.attachments.
func TestGoldenAttachments(t *testing.T) {
	if *update {
		writeGolden(t, goldenAttachDir, pushGoldenAttachments)
	}
	checkGolden(t, goldenAttachDir, goldenAttachments)
	readme, err := os.ReadFile(filepath.Join(goldenAttachDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(goldenAttachDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.Contains(string(readme), "| `"+f.Name()+"` |") {
			t.Errorf("%s/README.md states nothing about %s", goldenAttachDir, f.Name())
		}
	}
}

// checkGolden checks the golden set in dir; attach, if not nil, gives the
// attachments the set's images must carry (by fixture name).
func checkGolden(t *testing.T, dir string, attach func(testing.TB, testimages.Fixture) map[string][]bundle.Attachment) {
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bundleTar, approvalTar, indexJSON := read("bundle.tar"), read("approval.tar"), read("index.json")
	rootJSON := read("repo/metadata/1.root.json")

	// The tar, read with archive/tar alone, is what members.txt says.
	entries := readTar(t, bundleTar)
	if got, want := memberListing(entries), string(read("members.txt")); got != want {
		t.Fatalf("bundle.tar members:\n%s\nmembers.txt:\n%s", got, want)
	}
	data := map[string][]byte{}
	for _, e := range entries {
		data[e.Hdr.Name] = e.Data
	}

	// ReadHead: the index is index.json byte for byte, every head member
	// is the member's bytes, and the root chain is the golden repo's.
	head, err := bundle.ReadHead(bytes.NewReader(bundleTar), "bundle.tar")
	if err != nil {
		t.Fatalf("ReadHead: %v", err)
	}
	if !bytes.Equal(head.IndexRaw, indexJSON) || head.IndexSHA256 != sha256Hex(indexJSON) {
		t.Errorf("ReadHead index (sha256 %s) is not index.json (sha256 %s)", head.IndexSHA256, sha256Hex(indexJSON))
	}
	if !bytes.Equal(head.Pending, data[bundle.PendingTargets]) {
		t.Error("Head.Pending is not head/targets.json")
	}
	if len(head.Roots) != 1 || !bytes.Equal(head.Roots[1], rootJSON) {
		t.Errorf("Head.Roots (%d versions) is not the golden repo's root v1", len(head.Roots))
	}
	for name, p := range head.Payloads {
		if !bytes.Equal(p, data[name]) {
			t.Errorf("Head.Payloads[%s] is not the member's bytes", name)
		}
	}

	// What the index says, checked against the fixture, not against itself.
	idx := head.Index
	fix, err := testimages.New(1)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, fixture string }{
		{testimages.MultiArch, testimages.MultiArch}, {testimages.AppOne, testimages.AppOne}, {"apps/two:1.0", testimages.AppTwo},
	}
	if idx.Format != bundle.BundleFormat || idx.Tool != "test" || !idx.Created.Equal(exportNow) || idx.Destination != testDest ||
		idx.Base != (bundle.Base{RootVersion: 1, TargetsVersion: 1}) || len(idx.Images) != len(want) || len(idx.Removals) != 0 {
		t.Fatalf("golden index header: %+v", idx)
	}
	var wantAttach map[string][]bundle.Attachment
	if attach != nil {
		wantAttach = attach(t, fix)
	}
	for i, img := range idx.Images {
		if only, extra := bundle.SameAttachments(img.Attachments, wantAttach[want[i].fixture]); only != nil || extra != nil {
			t.Errorf("image %s: attachments %+v; want %+v", img.Name, img.Attachments, wantAttach[want[i].fixture])
		}
		d, mt, size := fixtureDigest(t, fix, want[i].fixture)
		if img.Name != want[i].name || img.Digest != d.String() || img.MediaType != mt || img.Size != size || img.Payload != fmt.Sprintf("head/payloads/%d.json", i) {
			t.Errorf("image %d: %+v; want %s = %s %s (%d bytes)", i, img, want[i].name, d, mt, size)
		}
		p, err := bundle.Payload(testDest, img)
		if err != nil || !bytes.Equal(p, head.Payloads[img.Payload]) {
			t.Errorf("image %s: payload is not the one Payload builds (%v)", img.Name, err)
		}
	}

	// Open: every member where members.txt puts it, every blob readable
	// and digest-checked.
	b, err := bundle.Open(filepath.Join(dir, "bundle.tar"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if b.Head.IndexSHA256 != head.IndexSHA256 || !bytes.Equal(b.Layout, data[bundle.LayoutIndex]) {
		t.Error("Open's head or layout differs from ReadHead's and the tar's")
	}
	var blobs []string
	for _, e := range entries {
		if h, ok := strings.CutPrefix(e.Hdr.Name, "oci/blobs/sha256/"); ok {
			blobs = append(blobs, "sha256:"+h)
			if n, ok := b.HasBlob("sha256:" + h); !ok || n != int64(len(e.Data)) {
				t.Errorf("HasBlob(%s) = %d, %v", h, n, ok)
			}
		}
	}
	if !slices.Equal(b.Blobs(), blobs) {
		t.Errorf("Blobs() = %v\nthe tar holds %v", b.Blobs(), blobs)
	}
	if err := readAllBlobs(t, b); err != nil {
		t.Errorf("reading the golden blobs: %v", err)
	}
	if _, ok := b.HasBlob("sha256:" + strings.Repeat("0", 64)); ok {
		t.Error("HasBlob reports a blob the bundle does not hold")
	}

	// The approval reads back as approval.json says, bound to this bundle.
	af, err := bundle.ReadApproval(bytes.NewReader(approvalTar), "approval.tar")
	if err != nil {
		t.Fatalf("ReadApproval: %v", err)
	}
	var wantApproval bundle.Approval
	if err := json.Unmarshal(read("approval.json"), &wantApproval); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*af.Approval, wantApproval) {
		t.Errorf("approval:\n%+v\napproval.json:\n%+v", *af.Approval, wantApproval)
	}
	a := af.Approval
	if a.Format != bundle.ApprovalFormat || a.Tool != "test" || !a.Created.Equal(signNow) || a.TargetsVersion != 2 ||
		a.Bundle != (bundle.BundleRef{IndexSHA256: head.IndexSHA256, IndexSize: int64(len(indexJSON))}) {
		t.Errorf("approval header: %+v", a)
	}
	at := readTar(t, approvalTar)
	if len(at) != 3 || at[0].Hdr.Name != bundle.ApprovalName || at[1].Hdr.Name != bundle.ApprovalTargets || at[2].Hdr.Name != bundle.ApprovalCosign ||
		!bytes.Equal(at[0].Data, read("approval.json")) || !bytes.Equal(at[1].Data, af.Targets) || !bytes.Equal(at[2].Data, af.CosignPub) {
		t.Error("approval.tar is not approval.json, targets.json, cosign.pub")
	}

	// The signed targets verify against the golden root, hold exactly the
	// bundle's images bound to its ID, and publish the cosign keys.
	root, err := metadata.Root().FromBytes(rootJSON)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := metadata.Targets().FromBytes(af.Targets)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(trust.Targets, targets); err != nil {
		t.Errorf("the approval's targets do not verify against the golden root: %v", err)
	}
	cosignPub, err := bundle.CosignPub(root)
	if err != nil || !bytes.Equal(cosignPub, af.CosignPub) {
		t.Errorf("cosign.pub is not the root's targets keys (%v)", err)
	}
	checkSignedTargets(t, targets, idx, head.IndexSHA256, af.CosignPub)
	checkSignatures(t, root, head, a)

	// MakePlan against (a copy of) the golden repo still says plan.json.
	repo := filepath.Join(t.TempDir(), "repo")
	testfs.CopyDir(t, filepath.Join(dir, "repo"), repo)
	p, err := approve.MakePlan(context.Background(), bytes.NewReader(bundleTar), "bundle.tar", repo)
	if err != nil {
		t.Fatalf("MakePlan: %v", err)
	}
	gotPlan, _ := json.MarshalIndent(p, "", "  ")
	if wantPlan := read("plan.json"); !bytes.Equal(gotPlan, wantPlan) {
		t.Errorf("plan:\n%s\nplan.json:\n%s", gotPlan, wantPlan)
	}
}

// TestGoldenExportUnchanged exports the standard bundle anew and compares
// it with the golden one: every member that depends only on the images and
// the destination (payloads, the OCI layout, every blob) has the same name,
// size and sha256 in the same place, and the images are the same. (The
// pending targets, root and index depend on the ceremony's keys and the
// source registry's port.) A failure here means the writer changed the
// format; if that is meant, run -update. The fixture's layers are gzip'd:
// a Go release that changes compress/flate's output changes them too.
func TestGoldenExportUnchanged(t *testing.T) {
	checkGoldenExport(t, goldenDir, nil)
}

// TestGoldenAttachmentsExportUnchanged: the same for golden-attachments/;
// the attachments are made from fixed bytes and a seeded ed25519 key, so
// their manifests and blobs are the same on every run too.
func TestGoldenAttachmentsExportUnchanged(t *testing.T) {
	checkGoldenExport(t, goldenAttachDir, pushGoldenAttachments)
}

func checkGoldenExport(t *testing.T, dir string, setup func(testing.TB, *world)) {
	golden, err := os.ReadFile(filepath.Join(dir, "bundle.tar"))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	if setup != nil {
		setup(t, w)
	}
	path, _ := w.export(t, w.exportOptions())
	fresh, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stable := func(data []byte) (string, bundle.Index) {
		entries := readTar(t, data)
		var kept []tarEntry
		for _, e := range entries[1:] {
			if e.Hdr.Name != bundle.PendingTargets && !strings.HasPrefix(e.Hdr.Name, "head/root/") {
				kept = append(kept, e)
			}
		}
		idx := decodeIndex(t, entries)
		for i := range idx.Images {
			idx.Images[i].Source = idx.Images[i].Source[strings.Index(idx.Images[i].Source, "/"):] // drop HOST:PORT
		}
		idx.Members = nil
		return memberListing(kept), idx
	}
	gl, gi := stable(golden)
	fl, fi := stable(fresh)
	if gl != fl {
		t.Errorf("a fresh export's stable members:\n%s\nthe golden bundle's:\n%s", fl, gl)
	}
	if !reflect.DeepEqual(gi, fi) {
		t.Errorf("a fresh export's index (without members):\n%+v\nthe golden one:\n%+v", fi, gi)
	}
}

func writeGolden(t *testing.T, dir string, setup func(testing.TB, *world)) {
	w := newWorld(t)
	if setup != nil {
		setup(t, w)
	}
	path, _ := w.export(t, w.exportOptions())
	p, res := w.sign(t, path)
	bundleTar, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries := readTar(t, bundleTar)
	plan, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	// README.md (hand-written) stays.
	for _, name := range []string{"repo", "bundle.tar", "approval.tar", "index.json", "members.txt", "approval.json", "plan.json"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	testfs.CopyDir(t, filepath.Join(w.signer, trust.MetadataDir), filepath.Join(dir, "repo", trust.MetadataDir))
	for name, data := range map[string][]byte{
		"bundle.tar":    bundleTar,
		"approval.tar":  res.Approval,
		"index.json":    entries[0].Data,
		"members.txt":   []byte(memberListing(entries)),
		"approval.json": readTar(t, res.Approval)[0].Data,
		"plan.json":     plan,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// memberListing is "sha256 size name" per member, one a line.
func memberListing(entries []tarEntry) string {
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %6d %s\n", sha256Hex(e.Data), len(e.Data), e.Hdr.Name)
	}
	return b.String()
}

// fixtureDigest returns the digest, media type and manifest size of a
// fixture image or index.
func fixtureDigest(t testing.TB, fix testimages.Fixture, name string) (v1.Hash, string, int64) {
	t.Helper()
	type artifact interface {
		Digest() (v1.Hash, error)
		RawManifest() ([]byte, error)
	}
	var a artifact
	var mt string
	if img, ok := fix.Images[name]; ok {
		a = img
		m, _ := img.MediaType()
		mt = string(m)
	} else {
		a = fix.Indexes[name]
		m, _ := fix.Indexes[name].MediaType()
		mt = string(m)
	}
	d, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := a.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return d, mt, int64(len(raw))
}

// checkSignedTargets checks signed targets made from idx: one target per
// image with its length, digest, media type and bundle ID, the cosign.pub
// target matching cosignPub, and nothing else.
func checkSignedTargets(t testing.TB, targets *metadata.Metadata[metadata.TargetsType], idx *bundle.Index, bundleID string, cosignPub []byte) {
	t.Helper()
	for _, img := range idx.Images {
		tf, ok := targets.Signed.Targets[img.Name]
		if !ok {
			t.Errorf("signed targets lack %s", img.Name)
			continue
		}
		var c bundle.TargetCustom
		if tf.Custom == nil || json.Unmarshal(*tf.Custom, &c) != nil {
			t.Errorf("%s: no custom data", img.Name)
			continue
		}
		if tf.Length != img.Size || "sha256:"+tf.Hashes["sha256"].String() != img.Digest || c.MediaType != img.MediaType || c.Bundle != bundleID {
			t.Errorf("%s: target %d bytes sha256 %s custom %+v; want %d bytes %s bound to %s", img.Name, tf.Length, tf.Hashes["sha256"], c, img.Size, img.Digest, bundleID)
		}
		if !reflect.DeepEqual(c.Attachments, img.Attachments) {
			t.Errorf("%s: signed custom.attachments %+v; the index lists %+v", img.Name, c.Attachments, img.Attachments)
		}
	}
	cp, ok := targets.Signed.Targets[bundle.CosignPubTarget]
	if !ok || cp.Length != int64(len(cosignPub)) || cp.Hashes["sha256"].String() != sha256Hex(cosignPub) {
		t.Errorf("the cosign.pub target does not match the cosign.pub member")
	}
	if n := len(targets.Signed.Targets); n != len(idx.Images)+1 {
		t.Errorf("signed targets hold %d targets, want the %d images and cosign.pub", n, len(idx.Images))
	}
}

// checkSignatures checks an approval's cosign signatures: one per image
// (1-of-1 targets), each naming the image, its digest and payload and the
// targets key, and verifying over exactly that payload with that key.
func checkSignatures(t testing.TB, root *metadata.Metadata[metadata.RootType], head *bundle.Head, a *bundle.Approval) {
	t.Helper()
	keys, err := trust.RoleKeys(root, trust.Targets)
	if err != nil || len(keys) != 1 {
		t.Fatalf("root targets keys: %v (%d)", err, len(keys))
	}
	// The image's manifest and each child's (cosign sign --recursive), in
	// image order.
	type want struct {
		img bundle.Image
		sd  bundle.Signed
	}
	var wants []want
	for _, img := range head.Index.Images {
		for _, sd := range img.SignedDigests() {
			wants = append(wants, want{img, sd})
		}
	}
	if len(a.Signatures) != len(wants) {
		t.Fatalf("%d signatures for %d images and their children", len(a.Signatures), len(wants))
	}
	for i, s := range a.Signatures {
		w := wants[i]
		if s.Image != w.img.Name || s.Digest != w.sd.Digest || s.Payload != w.sd.Payload || s.KeyID != keys[0].ID {
			t.Errorf("signature %d: %+v; want image %s %s %s by %s", i, s, w.img.Name, w.sd.Digest, w.sd.Payload, keys[0].ID)
		}
		sig, err := base64.StdEncoding.DecodeString(s.Signature)
		if err != nil {
			t.Errorf("signature %d: %v", i, err)
			continue
		}
		if err := hsm.VerifySignature(keys[0].Public, head.Payloads[w.sd.Payload], sig); err != nil {
			t.Errorf("signature of %s (%s) does not verify over its payload: %v", w.img.Name, w.sd.Digest, err)
		}
		other := head.Payloads[wants[(i+1)%len(wants)].sd.Payload]
		if hsm.VerifySignature(keys[0].Public, other, sig) == nil {
			t.Errorf("signature of %s (%s) also verifies over another manifest's payload", w.img.Name, w.sd.Digest)
		}
	}
}
