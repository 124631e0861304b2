package trust

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testkeys"
)

// repo is a minimal signed repository built with this package's pieces
// (the ceremony package builds the real one); each test changes it.
type repo struct {
	dir                                 string
	rootKey, targetsKey, snapKey, tsKey *hsm.Key
	root                                *metadata.Metadata[metadata.RootType]
	targets                             *metadata.Metadata[metadata.TargetsType]
	snap                                *metadata.Metadata[metadata.SnapshotType]
	ts                                  *metadata.Metadata[metadata.TimestampType]
}

func newRepo(t *testing.T, now time.Time) *repo {
	t.Helper()
	r := &repo{dir: t.TempDir(),
		rootKey: testkeys.New(t, "root"), targetsKey: testkeys.New(t, "targets"),
		snapKey: testkeys.New(t, "snapshot"), tsKey: testkeys.New(t, "timestamp")}
	exp := DefaultExpiry()
	r.root = metadata.Root(ExpiresAt(now, exp[Root]))
	for role, k := range map[string]*hsm.Key{Root: r.rootKey, Targets: r.targetsKey, Snapshot: r.snapKey, Timestamp: r.tsKey} {
		tk, err := metadata.KeyFromPublicKey(k.Public)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.root.Signed.AddKey(tk, role); err != nil {
			t.Fatal(err)
		}
	}
	must(t, Sign(r.root, Root, r.rootKey.Signer))
	r.targets = metadata.Targets(ExpiresAt(now, exp[Targets]))
	must(t, Sign(r.targets, Targets, r.targetsKey.Signer))
	r.snap = metadata.Snapshot(ExpiresAt(now, exp[Snapshot]))
	r.snap.Signed.Meta["targets.json"] = metadata.MetaFile(1)
	must(t, Sign(r.snap, Snapshot, r.snapKey.Signer))
	r.ts = metadata.Timestamp(ExpiresAt(now, exp[Timestamp]))
	r.ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(1)
	must(t, Sign(r.ts, Timestamp, r.tsKey.Signer))
	must(t, Publish(context.Background(), r.dir, Publication{Roots: []*metadata.Metadata[metadata.RootType]{r.root}, Targets: r.targets, Snapshot: r.snap, Timestamp: r.ts}))
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// bump publishes snapshot and timestamp at version v, signed by the given keys.
func (r *repo) bump(t *testing.T, v int64, snapSigner, tsSigner hsm.Signer) error {
	t.Helper()
	snap := metadata.Snapshot(r.snap.Signed.Expires)
	snap.Signed.Version = v
	snap.Signed.Meta["targets.json"] = metadata.MetaFile(1)
	must(t, Sign(snap, Snapshot, snapSigner))
	ts := metadata.Timestamp(r.ts.Signed.Expires)
	ts.Signed.Version = v
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(v)
	must(t, Sign(ts, Timestamp, tsSigner))
	return Publish(context.Background(), r.dir, Publication{Snapshot: snap, Timestamp: ts})
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, time.Now())
	v, err := Verify(ctx, r.dir, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Timestamp.Signed.Version != 1 || v.Targets.Signed.Version != 1 {
		t.Fatalf("verified versions ts %d targets %d", v.Timestamp.Signed.Version, v.Targets.Signed.Version)
	}
	// A timestamp signed by the wrong key is refused, naming the role.
	must(t, r.bump(t, 2, r.snapKey.Signer, r.snapKey.Signer))
	_, err = Verify(ctx, r.dir, VerifyOptions{})
	var ve *VerificationError
	if !errors.As(err, &ve) || ve.What != Timestamp || ve.Version != 2 || !strings.Contains(ve.Error(), "threshold") {
		t.Fatalf("wrongly signed timestamp: %v", err)
	}
	// Fixed by a correctly signed newer one.
	must(t, r.bump(t, 3, r.snapKey.Signer, r.tsKey.Signer))
	if _, err := Verify(ctx, r.dir, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	// Expired at a later reference time, naming the expiry.
	_, err = Verify(ctx, r.dir, VerifyOptions{Now: time.Now().Add(48 * time.Hour)})
	if !errors.As(err, &ve) || ve.Reason != "metadata expired" {
		t.Fatalf("expired: %v", err)
	}
}

func TestVerifyMissingAndOversized(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, time.Now())
	ts := filepath.Join(r.dir, MetadataDir, "timestamp.json")
	os.Rename(ts, ts+".bak")
	_, err := Verify(ctx, r.dir, VerifyOptions{})
	if !IsVerification(err) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing timestamp: %v", err)
	}
	os.WriteFile(ts, make([]byte, MaxTimestampSize+1), 0o644)
	if _, err := Verify(ctx, r.dir, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized timestamp: %v", err)
	}
}

func TestPublishNeverRewrites(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, time.Now())
	// Re-publishing identical bytes is a no-op (an interrupted run again).
	must(t, Publish(ctx, r.dir, Publication{Targets: r.targets}))
	// Different targets under the same version: refused.
	other := metadata.Targets(r.targets.Signed.Expires)
	other.Signed.Targets["x"] = &metadata.TargetFiles{Length: 1, Hashes: metadata.Hashes{"sha256": make([]byte, 32)}}
	must(t, Sign(other, Targets, r.targetsKey.Signer))
	if err := Publish(ctx, r.dir, Publication{Targets: other}); err == nil || !strings.Contains(err.Error(), "never rewritten") {
		t.Fatalf("rewrite of 1.targets.json: %v", err)
	}
	// A snapshot the timestamp does not name yet (orphan of a crash) may be
	// replaced; the published one may not.
	orphan := metadata.Snapshot(r.snap.Signed.Expires)
	orphan.Signed.Version = 2
	orphan.Signed.Meta["targets.json"] = metadata.MetaFile(1)
	must(t, Sign(orphan, Snapshot, r.snapKey.Signer))
	must(t, Publish(ctx, r.dir, Publication{Snapshot: orphan}))
	must(t, r.bump(t, 2, r.snapKey.Signer, r.tsKey.Signer))
	if _, err := Verify(ctx, r.dir, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Publish(ctx, r.dir, Publication{Snapshot: orphan}); err == nil {
		t.Fatal("replaced the published snapshot")
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(filepath.Join(r.dir, MetadataDir))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("left %s", e.Name())
		}
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(context.Background(), dir)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	got := make(chan error, 1)
	go func() {
		defer wg.Done()
		u, err := Lock(context.Background(), dir)
		if err == nil {
			u()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	unlock()
	wg.Wait()
	must(t, <-got)
	fi, err := os.Stat(filepath.Join(dir, StateDir))
	must(t, err)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	r := newRepo(t, now)
	states := func(at time.Time, warn Expiry) map[string]string {
		t.Helper()
		st, err := Status(ctx, r.dir, at, warn)
		must(t, err)
		m := map[string]string{}
		for _, s := range st {
			m[s.Role] = s.State
		}
		return m
	}
	want := func(got map[string]string, w map[string]string) {
		t.Helper()
		for role, s := range w {
			if got[role] != s {
				t.Errorf("%s: state %s, want %s (all: %v)", role, got[role], s, got)
			}
		}
	}
	want(states(now, DefaultWarn()), map[string]string{Root: StateOK, Targets: StateOK, Snapshot: StateOK, Timestamp: StateOK})
	// 20 hours on: timestamp (1 day, warn 6h) is expiring.
	want(states(now.Add(20*time.Hour), DefaultWarn()), map[string]string{Timestamp: StateExpiring, Snapshot: StateOK})
	// 2 days on: timestamp expired, snapshot (7d) fine.
	want(states(now.Add(48*time.Hour), DefaultWarn()), map[string]string{Timestamp: StateExpired, Snapshot: StateOK, Root: StateOK})
	// 70 days: targets (90d, warn 30d) expiring.
	want(states(now.Add(70*24*time.Hour), DefaultWarn()), map[string]string{Targets: StateExpiring, Root: StateOK})
	// One window for every role.
	w := Expiry{}
	for role := range DefaultWarn() {
		w[role] = 400 * 24 * time.Hour
	}
	want(states(now, w), map[string]string{Root: StateExpiring, Targets: StateExpiring})
	// A timestamp signed by the wrong key is invalid, not expired.
	must(t, r.bump(t, 2, r.snapKey.Signer, r.rootKey.Signer))
	want(states(now, DefaultWarn()), map[string]string{Timestamp: StateInvalid, Snapshot: StateOK})
}

func TestPublishRefusesLinksInTargets(t *testing.T) {
	r := newRepo(t, time.Now())
	outside := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(r.dir, TargetsDir), 0o755))
	must(t, os.Symlink(outside, filepath.Join(r.dir, TargetsDir, "demo")))
	err := Publish(context.Background(), r.dir, Publication{TargetFiles: map[string][]byte{"demo/app:1": []byte("x")}})
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("publish through a link: %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("wrote %d files outside the repository", len(entries))
	}
}
