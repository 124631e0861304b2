package mirror

import (
	"archive/tar"
	"bytes"
	"context"
	"math"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

// TestTUFAttacksImport runs one approval per class of the TUF
// specification's list of attacks (section 1.5.2) through mirror.Import:
// each is a refusal (exit 3) naming what failed; no tag is pushed and
// nothing is published.
func TestTUFAttacksImport(t *testing.T) {
	s := newSetup(t)
	good, err := bundle.OpenApproval(s.approval)
	if err != nil {
		t.Fatal(err)
	}
	attacker := testkeys.New(t, "attacker")
	byName := map[string]hostileApproval{}
	for _, c := range hostileApprovals(t, s, good, attacker) {
		byName[c.name] = c
	}
	resignBy := func(k *hsm.Key, edit func(*targetsMeta)) func(*bundle.ApprovalFile, *targetsMeta) {
		return func(af *bundle.ApprovalFile, tg *targetsMeta) {
			edit(tg)
			tg.ClearSignatures()
			if err := trust.Sign(tg, trust.Targets, k.Signer); err != nil {
				t.Fatal(err)
			}
			af.Targets = encode(t, tg)
		}
	}
	attacks := []struct {
		class string
		c     hostileApproval
	}{
		{"arbitrary-content", byName["targets-signed-by-attacker"]},
		{"arbitrary-content-cosign", byName["signature-garbage"]},
		{"freeze", byName["expired"]},
		{"mix-and-match", byName["target-never-imported"]},
		{"mix-and-match-other-bundle", byName["image-for-another-bundle"]},
		{"threshold", byName["targets-unsigned"]},
		{"duplicate-signatures", byName["signature-twice"]},
		{"wrong-role-key", hostileApproval{edit: resignBy(s.snapshot, func(*targetsMeta) {}),
			want: `^verification refused: targets v2: not signed by 1 of the targets keys of root v1`}},
		{"malicious-root-update", byName["rotation-to-attacker"]},
		{"endless-data", hostileApproval{raw: endlessTar(t),
			want: `coldharbor-approval\.json`}},
		{"fast-forward", hostileApproval{edit: func(af *bundle.ApprovalFile, tg *targetsMeta) {
			af.Approval.TargetsVersion = math.MaxInt64
			resignBy(s.targets, func(tg *targetsMeta) { tg.Signed.Version = math.MaxInt64 })(af, tg)
		}, want: `^the repository this import would publish does not verify: verification refused: targets v9223372036854775807: version 9223372036854775807 is outside`}},
	}
	repoHash := testfs.TreeHash(t, s.path("isolated"), "lock")
	for _, a := range attacks {
		t.Run(a.class, func(t *testing.T) {
			if a.c.want == "" {
				t.Fatal("no such case in hostileApprovals")
			}
			path := s.path("attack.tar")
			if err := os.WriteFile(path, a.c.approval(t, s, good), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Import(context.Background(), s.bundle, path, ImportOptions{Repo: s.path("isolated"), Registry: s.dest,
				SnapshotKey: s.snapshot, TimestampKey: s.timestamp})
			wantRefusal(t, err, a.c.want)
			if testfs.TreeHash(t, s.path("isolated"), "lock") != repoHash {
				t.Fatal("published")
			}
			if repos := catalog(t, s); len(repos) > 0 {
				t.Fatalf("pushed: %v", repos)
			}
		})
	}
	// Rollback: an approval older than the published targets.
	t.Run("rollback", func(t *testing.T) {
		if _, err := s.importOnce(); err != nil {
			t.Fatal(err)
		}
		b2, a2 := s.makeBundle(t, "b2", testimages.AppOne)
		if _, err := s.importPair(b2, a2); err != nil {
			t.Fatal(err)
		}
		before := testfs.TreeHash(t, s.path("isolated"), "lock")
		_, err := s.importOnce()
		wantRefusal(t, err, `^verification refused: targets v2: not newer than the published targets v3`)
		if testfs.TreeHash(t, s.path("isolated"), "lock") != before {
			t.Fatal("published")
		}
	})
}

// TestTUFAttacksRefresh runs the attacks a refresh bundle can carry through
// the refresh path (trust.ApplyRefresh, what `import REFRESH` calls).
func TestTUFAttacksRefresh(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	isolated := s.path("isolated")
	st, err := trust.LoadState(context.Background(), isolated)
	if err != nil {
		t.Fatal(err)
	}
	attacker := testkeys.New(t, "attacker")
	expires := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	ts := func(v, snap int64, exp time.Time, k *hsm.Key) []byte {
		m := metadata.Timestamp(exp)
		m.Signed.Version = v
		m.Signed.Meta["snapshot.json"] = metadata.MetaFile(snap)
		if k != nil {
			if err := trust.Sign(m, trust.Timestamp, k.Signer); err != nil {
				t.Fatal(err)
			}
		}
		b, err := m.ToBytes(true)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cur, snap := st.Timestamp.Signed.Version, st.Snapshot.Signed.Version
	for _, a := range []struct {
		class, want string
		timestamp   []byte
	}{
		{"arbitrary-content", `^verification refused: timestamp v\d+: `, ts(cur+1, snap, expires, attacker)},
		{"rollback", `not above the trusted timestamp`, ts(cur, snap, expires, s.timestamp)},
		{"freeze", `expired`, ts(cur+1, snap, time.Now().Add(-time.Hour).UTC().Truncate(time.Second), s.timestamp)},
		{"mix-and-match", `names snapshot v99`, ts(cur+1, 99, expires, s.timestamp)},
		{"threshold", `^verification refused: timestamp v\d+: `, ts(cur+1, snap, expires, nil)},
		{"wrong-role-key", `^verification refused: timestamp v\d+: `, ts(cur+1, snap, expires, s.snapshot)},
		{"fast-forward", `version 9223372036854775807 is outside`, ts(math.MaxInt64, snap, expires, s.timestamp)},
	} {
		t.Run(a.class, func(t *testing.T) {
			before := testfs.TreeHash(t, isolated, "lock")
			_, err := trust.ApplyRefresh(context.Background(), isolated, a.timestamp, nil, time.Time{})
			wantRefusal(t, err, a.want)
			if testfs.TreeHash(t, isolated, "lock") != before {
				t.Fatal("published")
			}
		})
	}
	t.Run("endless-data", func(t *testing.T) {
		_, err := bundle.ReadRefresh(bytes.NewReader(endlessTar(t)), "refresh.tar")
		if !bundle.IsFormatError(err) {
			t.Fatalf("got %v, want a format refusal", err)
		}
	})
}

// endlessTar is a tar whose first member claims a terabyte.
func endlessTar(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: bundle.ApprovalName, Size: 1 << 40, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	buf.Write(bytes.Repeat([]byte("{"), 1<<16))
	return buf.Bytes()
}

func wantRefusal(t *testing.T, err error, want string) {
	t.Helper()
	if !trust.IsVerification(err) && !bundle.IsFormatError(err) {
		t.Fatalf("want a refusal (exit 3), got %T: %v", err, err)
	}
	if !regexp.MustCompile(want).MatchString(err.Error()) {
		t.Errorf("refusal %q\ndoes not match %q", err, want)
	}
}
