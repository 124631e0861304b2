package bundle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

// fencedReader serves data but fails any read past limit: proof that its
// reader never looked there.
type fencedReader struct {
	data  []byte
	off   int
	limit int
}

func (f *fencedReader) Read(p []byte) (int, error) {
	if f.off >= len(f.data) {
		return 0, io.EOF
	}
	if f.off+len(p) > f.limit {
		p = p[:max(0, f.limit-f.off)]
		if len(p) == 0 {
			return 0, fmt.Errorf("read past the head, at offset %d", f.off)
		}
	}
	n := copy(p, f.data[f.off:])
	f.off += n
	return n, nil
}

// TestSignerReadsOnlyHead shows the signer never reads past the head: with
// everything after it (the oci/ section) replaced by random bytes of the
// same length, MakePlan and Sign still succeed, behind a reader that fails
// any read past the last head member, and the approval binds the original
// bundle; while Open, which the importer runs, refuses the same file.
func TestSignerReadsOnlyHead(t *testing.T) {
	w := newWorld(t)
	path, res := w.export(t, w.exportOptions())
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := tarLayout(t, data)
	var headEnd, ociStart int64
	for _, e := range l {
		if strings.HasPrefix(e.Name, "oci/") {
			ociStart = e.HeaderOff
			break
		}
		headEnd = e.DataEnd
	}
	garbled := bytes.Clone(data)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := ociStart; i < int64(len(garbled)); i++ {
		garbled[i] = byte(rng.Uint32())
	}
	garbledPath := filepath.Join(t.TempDir(), "garbled.tar")
	if err := os.WriteFile(garbledPath, garbled, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		r    io.Reader
	}{
		{"garbage after the head", &fencedReader{data: garbled, limit: int(headEnd)}},
		{"file cut after the head", bytes.NewReader(data[:headEnd])},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := approve.MakePlan(w.ctx, c.r, garbledPath, w.signer)
			if err != nil {
				t.Fatalf("MakePlan: %v", err)
			}
			if p.IndexSHA256 != res.IndexSHA256 || len(p.Changes) != 3 || p.NewVersion != 2 {
				t.Fatalf("plan %+v, want the original bundle's (%s, 3 changes, v2)", p, res.IndexSHA256)
			}
			sr, err := p.Sign(w.ctx, approve.Options{Keys: []*hsm.Key{w.targets}, Now: signNow, Tool: "test"})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			af, err := bundle.ReadApproval(bytes.NewReader(sr.Approval), "approval.tar")
			if err != nil {
				t.Fatalf("ReadApproval: %v", err)
			}
			if af.Approval.Bundle.IndexSHA256 != res.IndexSHA256 || af.Approval.TargetsVersion != 2 || len(af.Approval.Signatures) != 5 {
				t.Fatalf("approval %+v is not for the original bundle", af.Approval)
			}
			root := signerRoot(t, w)
			targets, err := metadata.Targets().FromBytes(af.Targets)
			if err != nil {
				t.Fatal(err)
			}
			if err := root.VerifyDelegate(trust.Targets, targets); err != nil {
				t.Fatalf("the approval's targets do not verify: %v", err)
			}
			checkSignedTargets(t, targets, p.Head.Index, res.IndexSHA256, af.CosignPub)
			checkSignatures(t, root, p.Head, af.Approval)
		})
	}

	_, err = bundle.Open(garbledPath)
	wantFormatError(t, "Open(garbled)", err, "not a valid tar")
	if b, err := bundle.Open(path); err != nil {
		t.Errorf("Open(original): %v", err)
	} else {
		b.Close()
	}
}

// TestPlanRebased: two bundles exported against targets v1; the signer
// signs and records the first, so its repository is at v2 when the second
// comes. The second is rebased: new version v3, built from the signer's v2
// (keeping the first bundle's images) plus its own images.
func TestPlanRebased(t *testing.T) {
	w := newWorld(t)
	first, _ := w.export(t, w.exportOptions())
	o := w.exportOptions()
	o.Images = []export.ImageSpec{
		{Source: w.src("demo/app-two:1.0"), Name: "demo/app-one:1.0"}, // a new digest under an existing name
		{Source: w.src("demo/multiarch:1.0")},                         // the same digest as in the first bundle
		{Source: w.src("demo/app-one:1.0"), Name: "apps/one:1.0"},     // a new name
	}
	second, res2 := w.export(t, o)

	p1, err := w.plan(t, first)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Rebased || p1.BundleBase != 1 || p1.Current != 1 || p1.NewVersion != 2 {
		t.Fatalf("first plan: %+v, want base 1, current 1, new 2, not rebased", p1)
	}
	for _, c := range p1.Changes {
		if c.Kind != "added" {
			t.Errorf("first plan: %s is %s, want added", c.Name, c.Kind)
		}
	}
	s1, err := p1.Sign(w.ctx, approve.Options{Keys: []*hsm.Key{w.targets}, Now: signNow, Tool: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Record(w.ctx, w.signer, s1); err != nil {
		t.Fatalf("Record: %v", err)
	}

	p2, err := w.plan(t, second)
	if err != nil {
		t.Fatalf("MakePlan of the older bundle: %v", err)
	}
	if !p2.Rebased || p2.BundleBase != 1 || p2.Current != 2 || p2.NewVersion != 3 {
		t.Fatalf("second plan: base %d current %d new %d rebased %v; want 1, 2, 3, rebased", p2.BundleBase, p2.Current, p2.NewVersion, p2.Rebased)
	}
	appOne := w.digests["demo/app-one:1.0"].String()
	wantChanges := []string{
		"added apps/one:1.0 " + appOne,
		"changed demo/app-one:1.0 " + w.digests["demo/app-two:1.0"].String() + " was " + appOne,
		"unchanged demo/multiarch:1.0 " + w.digests["demo/multiarch:1.0"].String(),
	}
	var got []string
	for _, c := range p2.Changes {
		s := c.Kind + " " + c.Name + " " + c.Digest
		if c.OldDigest != "" {
			s += " was " + c.OldDigest
		}
		got = append(got, s)
	}
	if strings.Join(got, "\n") != strings.Join(wantChanges, "\n") {
		t.Errorf("second plan's changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantChanges, "\n"))
	}

	s2, err := p2.Sign(w.ctx, approve.Options{Keys: []*hsm.Key{w.targets}, Now: signNow, Tool: "test"})
	if err != nil {
		t.Fatalf("Sign of the rebased plan: %v", err)
	}
	af, err := bundle.ReadApproval(bytes.NewReader(s2.Approval), "approval.tar")
	if err != nil {
		t.Fatal(err)
	}
	targets, err := metadata.Targets().FromBytes(af.Targets)
	if err != nil {
		t.Fatal(err)
	}
	if s2.TargetsVersion != 3 || af.Approval.TargetsVersion != 3 || targets.Signed.Version != 3 {
		t.Errorf("rebased approval: targets v%d (approval says v%d, result v%d), want v3", targets.Signed.Version, af.Approval.TargetsVersion, s2.TargetsVersion)
	}
	// v2's apps/two:1.0 is kept from the first bundle, bound to it; the
	// second bundle's images are bound to the second bundle.
	bound := map[string]string{"apps/two:1.0": s1ID(t, first), "demo/app-one:1.0": res2.IndexSHA256, "demo/multiarch:1.0": res2.IndexSHA256, "apps/one:1.0": res2.IndexSHA256}
	for name, id := range bound {
		tf, ok := targets.Signed.Targets[name]
		if !ok {
			t.Errorf("rebased targets lack %s", name)
			continue
		}
		var c bundle.TargetCustom
		if tf.Custom == nil || json.Unmarshal(*tf.Custom, &c) != nil || c.Bundle != id {
			t.Errorf("%s: custom %+v, want it bound to bundle %s", name, c, id)
		}
	}
	if n := len(targets.Signed.Targets); n != len(bound)+1 {
		t.Errorf("rebased targets hold %d targets, want %d and cosign.pub", n, len(bound))
	}
	if err := signerRoot(t, w).VerifyDelegate(trust.Targets, targets); err != nil {
		t.Errorf("rebased targets do not verify: %v", err)
	}
}

func s1ID(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Hex(readTar(t, data)[0].Data)
}

func signerRoot(t testing.TB, w *world) *metadata.Metadata[metadata.RootType] {
	t.Helper()
	st, err := trust.LoadState(w.ctx, w.signer)
	if err != nil {
		t.Fatal(err)
	}
	return st.Root
}

// TestPlanRefusals: bundles the signer must refuse to plan, each a
// *trust.VerificationError (exit 3) naming the role and the reason, or a
// *FormatError for bytes the index does not vouch for. The head rewrites
// fix up the index (size and sha256) so that only the planned check can
// catch them.
func TestPlanRefusals(t *testing.T) {
	w := newWorld(t)
	path, _ := w.export(t, w.exportOptions())
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	good := readTar(t, data)
	other := filepath.Join(t.TempDir(), "other")
	ceremonyRepo(t, other)

	editHead := func(name string, f func([]byte) []byte) []byte {
		e := clone(good)
		for i := range e {
			if e[i].Hdr.Name == name {
				e[i].Data = f(bytes.Clone(e[i].Data))
				e[i].Hdr.Size = int64(len(e[i].Data))
			}
		}
		syncIndex(t, e)
		return writeTar(t, e)
	}
	evilPayload := func(b []byte) []byte {
		return bytes.Replace(b, []byte(testDest), []byte("evil.example/x"), 1)
	}
	cases := []struct {
		name string
		data []byte
		repo string
		role string // "" for a *FormatError
		re   string
	}{
		{"another root of trust", data, other, trust.Root, `root v1: the bundle's root differs from this repository's: it was made for another root of trust`},
		{"another root of trust, its root removed", func() []byte {
			e := slices.DeleteFunc(clone(good), func(x tarEntry) bool { return x.Hdr.Name == "head/root/1.root.json" })
			syncIndex(t, e)
			return writeTar(t, e)
		}(), other, "", `the head holds 0 root version\(s\), base\.root_version is 1`},
		{"root byte changed", editHead("head/root/1.root.json", flipLast), w.signer, trust.Root, `it was made for another root of trust`},
		{"root version the signer lacks", func() []byte {
			e := clone(good)
			i := slicesIndex(e, "head/root/1.root.json")
			e = append(e[:i+1], append([]tarEntry{{Hdr: regular("head/root/2.root.json", 2), Data: []byte("{}")}}, e[i+1:]...)...)
			syncIndex(t, e)
			withIndex(t, e, func(idx *bundle.Index) { idx.Base.RootVersion = 2 })
			return writeTar(t, e)
		}(), w.signer, trust.Root, `root v2: the bundle was made against root v2, which this repository \(root v1\) does not have: update it first`},
		{"payload names another registry", editHead("head/payloads/1.json", evilPayload), w.signer, "bundle",
			`the cosign payload for demo/app-one:1.0 is not the one for sha256:[0-9a-f]{64} under registry\.internal:5000/mirror`},
		{"payloads swapped", func() []byte {
			e := clone(good)
			i, j := slicesIndex(e, "head/payloads/1.json"), slicesIndex(e, "head/payloads/2.json")
			e[i].Data, e[j].Data = e[j].Data, e[i].Data
			e[i].Hdr.Size, e[j].Hdr.Size = int64(len(e[i].Data)), int64(len(e[j].Data))
			syncIndex(t, e)
			return writeTar(t, e)
		}(), w.signer, "bundle", `the cosign payload for demo/app-one:1.0 is not the one`},
		{"destination changed in the index", func() []byte {
			e := clone(good)
			withIndex(t, e, func(idx *bundle.Index) { idx.Destination = "evil.example/x" })
			return writeTar(t, e)
		}(), w.signer, "bundle", `is not the one for sha256:[0-9a-f]{64} under evil\.example/x`},
		{"pending targets with an extra target", editHead(bundle.PendingTargets, func(b []byte) []byte {
			m, err := metadata.Targets().FromBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			m.Signed.Targets["evil/x:1"] = m.Signed.Targets["demo/app-one:1.0"]
			out, err := m.ToBytes(true)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}), w.signer, trust.Targets, `targets v2: the bundle's pending targets differ from what this repository builds from it: 4 targets, expected 3`},
		{"pending targets pointing elsewhere", editHead(bundle.PendingTargets, func(b []byte) []byte {
			m, err := metadata.Targets().FromBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			m.Signed.Targets["demo/app-one:1.0"].Hashes["sha256"] = m.Signed.Targets["apps/two:1.0"].Hashes["sha256"]
			out, _ := m.ToBytes(true)
			return out
		}), w.signer, trust.Targets, `target demo/app-one:1\.0 differs`},
		{"pending targets not metadata", editHead(bundle.PendingTargets, func([]byte) []byte { return []byte("{}") }), w.signer, "", `member "head/targets\.json"`},
		{"bundle from the future", func() []byte {
			e := clone(good)
			withIndex(t, e, func(idx *bundle.Index) { idx.Base.TargetsVersion = 7 })
			return writeTar(t, e)
		}(), w.signer, trust.Targets, `built against targets v7, newer than this repository's v1`},
		{"payload changed, index not fixed", func() []byte {
			e := clone(good)
			i := slicesIndex(e, "head/payloads/0.json")
			e[i].Data = evilPayload(bytes.Clone(e[i].Data))
			e[i].Hdr.Size = int64(len(e[i].Data))
			return writeTar(t, e)
		}(), w.signer, "", `member "head/payloads/0\.json": size \d+, the index says \d+`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			noPanic(t, "MakePlan", func() error {
				_, err = approve.MakePlan(context.Background(), bytes.NewReader(c.data), "bundle.tar", c.repo)
				return err
			})
			t.Logf("MakePlan: %v", err)
			if c.role == "" {
				checkErr(t, "MakePlan", err, c.re, bundle.IsFormatError)
				return
			}
			var ve *trust.VerificationError
			if !errors.As(err, &ve) {
				t.Fatalf("MakePlan: %T %v, want a *trust.VerificationError", err, err)
			}
			if ve.What != c.role || !regexp.MustCompile(c.re).MatchString(err.Error()) {
				t.Errorf("MakePlan: role %q: %v\nwant role %q and a message matching %q", ve.What, err, c.role, c.re)
			}
		})
	}
}

func slicesIndex(e []tarEntry, name string) int {
	for i := range e {
		if e[i].Hdr.Name == name {
			return i
		}
	}
	panic("no member " + name)
}

// TestSignKeys: Sign accepts only private targets keys of the signer's
// root, at least the threshold of them, each once. A key that is not a
// targets key is a *trust.VerificationError naming it.
func TestSignKeys(t *testing.T) {
	w := newWorld(t)
	path, _ := w.export(t, w.exportOptions())
	intruder := testkeys.New(t, "intruder.key")
	intruderID, err := trust.KeyID(intruder.Public)
	if err != nil {
		t.Fatal(err)
	}
	otherTargets := ceremonyRepo(t, filepath.Join(t.TempDir(), "other"))
	cases := []struct {
		name   string
		keys   []*hsm.Key
		verify bool // a *trust.VerificationError
		re     string
	}{
		{"not a targets key", []*hsm.Key{intruder}, true,
			`verification refused: targets: key file:intruder\.key is not a targets key of root v1 \[keys ` + intruderID[:8]},
		{"another repository's targets key", []*hsm.Key{otherTargets}, true, `key file:targets\.key is not a targets key of root v1`},
		{"a targets key and an intruder", []*hsm.Key{w.targets, intruder}, true, `file:intruder\.key is not a targets key`},
		{"public half only", []*hsm.Key{testkeys.PublicOnly(w.targets)}, false, `only a public key is here`},
		{"no key", nil, false, `no targets key given`},
		{"the same key twice", []*hsm.Key{w.targets, w.targets}, false, `the same key is given twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := w.plan(t, path)
			if err != nil {
				t.Fatal(err)
			}
			res, err := p.Sign(w.ctx, approve.Options{Keys: c.keys, Now: signNow, Tool: "test"})
			t.Logf("Sign: %v", err)
			if err == nil {
				t.Fatalf("Sign accepted; approval of %d bytes", len(res.Approval))
			}
			var ve *trust.VerificationError
			if isVE := errors.As(err, &ve); isVE != c.verify {
				t.Errorf("Sign: %T %v; want a VerificationError: %v", err, err, c.verify)
			}
			if ve != nil && c.name == "not a targets key" && (ve.What != trust.Targets || len(ve.KeyIDs) != 1 || ve.KeyIDs[0] != intruderID) {
				t.Errorf("VerificationError names role %q keys %v, want targets and %s", ve.What, ve.KeyIDs, intruderID)
			}
			if !regexp.MustCompile(c.re).MatchString(err.Error()) {
				t.Errorf("Sign: %v\nwant a message matching %q", err, c.re)
			}
		})
	}

	// A plan made without a repository (what inspect shows) cannot be
	// signed.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := approve.MakePlan(w.ctx, f, path, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 3 || p.Current != 0 {
		t.Errorf("plan without a repository: %+v", p)
	}
	if _, err := p.Sign(w.ctx, approve.Options{Keys: []*hsm.Key{w.targets}}); err == nil || !strings.Contains(err.Error(), "cannot be signed") {
		t.Errorf("Sign of a plan without a repository: %v", err)
	}
}

// TestSign checks what a signature approves: targets v2 verified by the
// signer's root, each image bound to the bundle, cosign.pub published, one
// verifying cosign signature per image and per platform manifest of the
// index (3 images, 2 platforms: 5); and Record stores v2 in the
// signer's repository.
func TestSign(t *testing.T) {
	w := newWorld(t)
	path, res := w.export(t, w.exportOptions())
	p, sr := w.sign(t, path)
	if sr.TargetsVersion != 2 || sr.Images != 3 || sr.Signatures != 5 || len(sr.SignedBy) != 1 {
		t.Errorf("sign result %+v", sr)
	}
	af, err := bundle.ReadApproval(bytes.NewReader(sr.Approval), "approval.tar")
	if err != nil {
		t.Fatal(err)
	}
	if af.Approval.Bundle.IndexSHA256 != res.IndexSHA256 || !af.Approval.Created.Equal(signNow) || af.Approval.Tool != "test" {
		t.Errorf("approval %+v", af.Approval)
	}
	root := signerRoot(t, w)
	targets, err := metadata.Targets().FromBytes(af.Targets)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(trust.Targets, targets); err != nil {
		t.Fatalf("targets do not verify: %v", err)
	}
	if !targets.Signed.Expires.Equal(signNow.Add(trust.DefaultExpiry()[trust.Targets])) {
		t.Errorf("targets expire %v, want %v after signing", targets.Signed.Expires, trust.DefaultExpiry()[trust.Targets])
	}
	checkSignedTargets(t, targets, p.Head.Index, res.IndexSHA256, af.CosignPub)
	checkSignatures(t, root, p.Head, af.Approval)

	if err := p.Record(w.ctx, w.signer, sr); err != nil {
		t.Fatal(err)
	}
	st, err := trust.LoadState(w.ctx, w.signer)
	if err != nil {
		t.Fatal(err)
	}
	if st.Targets.Signed.Version != 2 {
		t.Errorf("after Record the signer's targets are v%d, want v2", st.Targets.Signed.Version)
	}
	recorded, err := st.Targets.ToBytes(true)
	if err != nil || !bytes.Equal(recorded, af.Targets) {
		t.Errorf("the recorded targets are not the approval's (%v)", err)
	}
}
