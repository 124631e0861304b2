package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

type targetsMeta = metadata.Metadata[metadata.TargetsType]

// hostileApproval is one way an approval can lie, with the refusal Import
// must give. step is the check of docs/bundle-format.md section 9 that
// catches it.
type hostileApproval struct {
	step, name string
	// edit changes a copy of the good approval, and its signed targets
	// (re-signed by the targets key when resign is set).
	edit     func(af *bundle.ApprovalFile, tg *targetsMeta)
	resign   bool
	raw      []byte // the approval file as it is, instead of an edit
	registry string // another --registry than the bundle's destination
	want     string // the refusal message, a regular expression
}

// TestHostileApprovals runs every lie through Import: each is a refusal
// (trust.VerificationError, exit 3) that names what failed, and leaves the
// repository and the registry as they were.
func TestHostileApprovals(t *testing.T) {
	s := newSetup(t)
	good, err := bundle.OpenApproval(s.approval)
	if err != nil {
		t.Fatal(err)
	}
	attacker := testkeys.New(t, "attacker")
	repoHash := testfs.TreeHash(t, s.path("isolated"), "lock")
	for _, c := range hostileApprovals(t, s, good, attacker) {
		t.Run(c.step+"/"+c.name, func(t *testing.T) {
			path := s.path("hostile.tar")
			if err := os.WriteFile(path, c.approval(t, s, good), 0o644); err != nil {
				t.Fatal(err)
			}
			reg := s.dest
			if c.registry != "" {
				reg = c.registry
			}
			_, err := Import(context.Background(), s.bundle, path, ImportOptions{Repo: s.path("isolated"), Registry: reg,
				SnapshotKey: s.snapshot, TimestampKey: s.timestamp})
			if !trust.IsVerification(err) {
				t.Fatalf("want a refusal, got %T: %v", err, err)
			}
			if !regexp.MustCompile(c.want).MatchString(err.Error()) {
				t.Errorf("refusal %q\ndoes not match %q", err, c.want)
			}
			if testfs.TreeHash(t, s.path("isolated"), "lock") != repoHash {
				t.Fatal("a refused import changed the repository")
			}
			if repos := catalog(t, s); len(repos) > 0 {
				t.Fatalf("a refused import pushed to the registry: %v", repos)
			}
		})
	}
	// The good approval imports; again, it is a rerun, not an attack
	// (issue 11, finding 8): checked, nothing published (step 6).
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	if res, err := s.importOnce(); err != nil || !res.AlreadyImported {
		t.Errorf("the same approval again: %+v %v, want already imported", res, err)
	}
}

func hostileApprovals(t *testing.T, s *setup, good *bundle.ApprovalFile, attacker *hsm.Key) []hostileApproval {
	img := good.Approval.Signatures[0].Image
	attackerID, err := trust.KeyID(attacker.Public)
	if err != nil {
		t.Fatal(err)
	}
	attackerPEM := pemOf(t, attacker)
	bundleRaw, err := os.ReadFile(s.bundle)
	if err != nil {
		t.Fatal(err)
	}
	return []hostileApproval{
		{step: "1", name: "the-bundle-instead", raw: bundleRaw,
			want: `member "coldharbor-bundle\.json": first member must be coldharbor-approval\.json`},
		{step: "1", name: "empty", raw: []byte{},
			want: `empty tar: not a coldharbor approval`},
		{step: "3", name: "another-bundle", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Approval.Bundle.IndexSHA256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		}, want: `^verification refused: approval: made for another bundle: it approves bundle index sha256 0123456789abcdef`},
		{step: "3", name: "another-index-size", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Approval.Bundle.IndexSize++
		}, want: `^verification refused: approval: made for another bundle`},
		{step: "4", name: "another-registry", edit: func(*bundle.ApprovalFile, *targetsMeta) {}, registry: "elsewhere.example/mirror",
			want: `^verification refused: bundle: exported for [^ ]+/mirror, not elsewhere\.example/mirror: .*exported for another registry$`},
		{step: "5", name: "targets-not-json", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Targets = []byte("{")
		}, want: `^verification refused: targets: approval's targets\.json does not parse`},
		{step: "5", name: "targets-unsigned", edit: func(af *bundle.ApprovalFile, tg *targetsMeta) {
			tg.ClearSignatures()
			af.Targets = encode(t, tg)
		}, want: `^verification refused: targets v2: not signed by 1 of the targets keys of root v1`},
		{step: "5", name: "targets-signed-by-attacker", edit: func(af *bundle.ApprovalFile, tg *targetsMeta) {
			tg.ClearSignatures()
			if err := trust.Sign(tg, trust.Targets, attacker.Signer); err != nil {
				t.Fatal(err)
			}
			af.Targets = encode(t, tg)
		}, want: `^verification refused: targets v2: not signed by 1 of the targets keys of root v1 .*\[keys ` + attackerID[:16] + `\]`},
		{step: "5", name: "rotation-to-attacker", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Roots = []bundle.ApprovalRoot{{Version: 2, Bytes: forgedRoot(t, s, attacker)}}
		}, want: `^verification refused: root v2: signature threshold not met`},
		{step: "5", name: "another-root-v1", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Roots = []bundle.ApprovalRoot{{Version: 1, Bytes: forgedRoot(t, s, attacker)}}
		}, want: `^verification refused: root v1: the approval's root differs from this repository's`},
		{step: "6", name: "version-mismatch", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Approval.TargetsVersion++
		}, want: `^verification refused: targets v2: the approval says version 3`},
		{step: "6", name: "expired", resign: true, edit: func(_ *bundle.ApprovalFile, tg *targetsMeta) {
			tg.Signed.Expires = time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
		}, want: `^verification refused: targets v2: expired \(expired `},
		{step: "7", name: "attacker-cosign-pub", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.CosignPub = attackerPEM
		}, want: `^verification refused: targets v2: the approval's cosign\.pub is not root's targets keys`},
		{step: "7", name: "cosign-pub-target-missing", resign: true, edit: func(_ *bundle.ApprovalFile, tg *targetsMeta) {
			delete(tg.Signed.Targets, bundle.CosignPubTarget)
		}, want: `^verification refused: targets v2: target cosign\.pub does not match root's targets keys`},
		{step: "7", name: "cosign-pub-target-attacker", resign: true, edit: func(_ *bundle.ApprovalFile, tg *targetsMeta) {
			tg.Signed.Targets[bundle.CosignPubTarget] = bundle.TargetFile(bundle.CosignPubTarget, attackerPEM)
		}, want: `^verification refused: targets v2: target cosign\.pub does not match root's targets keys`},
		{step: "8", name: "image-not-signed", resign: true, edit: func(_ *bundle.ApprovalFile, tg *targetsMeta) {
			delete(tg.Signed.Targets, img)
		}, want: `^verification refused: targets v2: image ` + regexp.QuoteMeta(img) + ` is in the bundle but not in the signed targets`},
		{step: "8", name: "image-other-digest", resign: true, edit: func(_ *bundle.ApprovalFile, tg *targetsMeta) {
			tg.Signed.Targets[img].Hashes["sha256"] = make([]byte, 32)
		}, want: `^verification refused: targets v2: image ` + regexp.QuoteMeta(img) + `: the bundle has sha256:[0-9a-f]{64} \(\d+ bytes\), the signed target is sha256:0{64}`},
		{step: "8", name: "image-for-another-bundle", resign: true, edit: func(_ *bundle.ApprovalFile, tg *targetsMeta) {
			setCustomBundle(t, tg.Signed.Targets[img], "feed")
		}, want: `^verification refused: targets v2: target ` + regexp.QuoteMeta(img) + ` was signed for bundle "feed", not this one`},
		{step: "8", name: "bound-target-not-in-bundle", resign: true, edit: func(af *bundle.ApprovalFile, tg *targetsMeta) {
			extra := bundle.TargetFile("demo/extra:1", []byte("x"))
			setCustomBundle(t, extra, af.Approval.Bundle.IndexSHA256)
			tg.Signed.Targets["demo/extra:1"] = extra
		}, want: `^verification refused: targets v2: target demo/extra:1 is bound to this bundle but not in it`},
		{step: "8", name: "target-never-imported", resign: true, edit: func(_ *bundle.ApprovalFile, tg *targetsMeta) {
			tg.Signed.Targets["demo/earlier:1"] = bundle.TargetFile("demo/earlier:1", []byte("x"))
		}, want: `^verification refused: targets v2: target demo/earlier:1 is neither in this bundle nor published here \(targets v0\)`},
		{step: "9", name: "no-signature", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Approval.Signatures = af.Approval.Signatures[1:]
		}, want: `^verification refused: cosign: no signature by a targets key for ` + regexp.QuoteMeta(img)},
		{step: "9", name: "signature-by-attacker-key", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Approval.Signatures[0].KeyID = attackerID
		}, want: `^verification refused: cosign: signature on ` + regexp.QuoteMeta(img) + ` \(sha256:[0-9a-f]{64}\) is by a key that is not a targets key \[keys ` + attackerID[:16] + `\]`},
		{step: "9", name: "signature-garbage", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Approval.Signatures[0].Signature = "AAAA"
		}, want: `^verification refused: cosign: signature on ` + regexp.QuoteMeta(img) + ` \(sha256:[0-9a-f]{64}\) does not verify`},
		{step: "9", name: "signature-twice", edit: func(af *bundle.ApprovalFile, _ *targetsMeta) {
			af.Approval.Signatures = append(af.Approval.Signatures, af.Approval.Signatures[0])
		}, want: `^verification refused: cosign: the approval holds two signatures on ` + regexp.QuoteMeta(img) + ` \(sha256:[0-9a-f]{64}\) by the same key`},
	}
}

// approval is the file a case imports: its raw bytes, or the good
// approval edited and written again.
func (c hostileApproval) approval(t *testing.T, s *setup, good *bundle.ApprovalFile) []byte {
	if c.raw != nil {
		return c.raw
	}
	a := *good.Approval
	a.Signatures = append([]bundle.Signature(nil), good.Approval.Signatures...)
	af := &bundle.ApprovalFile{Approval: &a, Targets: good.Targets, CosignPub: good.CosignPub, Roots: good.Roots}
	tg, err := metadata.Targets().FromBytes(good.Targets)
	if err != nil {
		t.Fatal(err)
	}
	c.edit(af, tg)
	if c.resign {
		tg.ClearSignatures()
		if err := trust.Sign(tg, trust.Targets, s.targets.Signer); err != nil {
			t.Fatal(err)
		}
		af.Targets = encode(t, tg)
	}
	var buf bytes.Buffer
	if err := bundle.WriteApproval(&buf, af.Approval, af.Targets, af.CosignPub, af.Roots); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encode(t *testing.T, tg *targetsMeta) []byte {
	b, err := tg.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func setCustomBundle(t *testing.T, tf *metadata.TargetFiles, id string) {
	c := custom(tf)
	c.Bundle = id
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	m := json.RawMessage(raw)
	tf.Custom = &m
}

// forgedRoot is the next root version trusting only the attacker, signed
// only by the attacker.
func forgedRoot(t *testing.T, s *setup, attacker *hsm.Key) []byte {
	st, err := trust.LoadState(context.Background(), s.signer)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := st.Root.ToBytes(false)
	forged, err := metadata.Root().FromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	forged.ClearSignatures()
	forged.Signed.Version++
	ak, err := metadata.KeyFromPublicKey(attacker.Public)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range append([]string{}, forged.Signed.Roles[trust.Root].KeyIDs...) {
		forged.Signed.RevokeKey(id, trust.Root)
	}
	forged.Signed.AddKey(ak, trust.Root)
	if err := trust.Sign(forged, trust.Root, attacker.Signer); err != nil {
		t.Fatal(err)
	}
	return encodeRoot(t, forged)
}

func encodeRoot(t *testing.T, r *metadata.Metadata[metadata.RootType]) []byte {
	b, err := r.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemOf(t *testing.T, k *hsm.Key) []byte {
	root := metadata.Root(time.Now().Add(time.Hour))
	tk, err := metadata.KeyFromPublicKey(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	root.Signed.AddKey(tk, trust.Targets)
	pem, err := bundle.CosignPub(root)
	if err != nil {
		t.Fatal(err)
	}
	return pem
}

// catalog lists the repositories the destination registry holds.
func catalog(t *testing.T, s *setup) []string {
	host, _, _ := bytes.Cut([]byte(s.dest), []byte("/"))
	reg, err := name.NewRegistry(string(host))
	if err != nil {
		t.Fatal(err)
	}
	repos, err := remote.Catalog(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	return repos
}
