package ceremony

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

// A rotation of the snapshot and timestamp keys in a repository whose
// snapshot and timestamp were signed at the ceremony: the repository still
// loads (the old online files are known from the private note, and due),
// a refresh re-signs both with the new keys and refuses the old ones naming
// the rotation, and a TUF client follows.
func TestRotateOnlineKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t)
	if _, err := Init(ctx, twoOfThree(dir, k, time.Time{})); err != nil {
		t.Fatal(err)
	}
	snap2, ts2 := testkeys.New(t, "snapshot2.key"), testkeys.New(t, "timestamp2.key")
	res, err := Rotate(ctx, RotateOptions{Dir: dir, SnapshotKey: testkeys.PublicOnly(snap2), TimestampKey: testkeys.PublicOnly(ts2),
		Keys: []*hsm.Key{k.root[0], k.root[1]}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Changed, ",") != "snapshot,timestamp" || res.TargetsVersion != 0 {
		t.Fatalf("rotation %+v", res)
	}
	st, err := trust.LoadState(ctx, dir)
	if err != nil {
		t.Fatalf("the repository after an online-key rotation: %v", err)
	}
	if st.Rotated[trust.Timestamp] != 2 || st.Rotated[trust.Snapshot] != 2 {
		t.Fatalf("rotated roles %v", st.Rotated)
	}
	_, err = trust.Refresh(ctx, dir, trust.RefreshOptions{Timestamp: k.timestamp.Signer, Snapshot: snap2.Signer, Publish: true})
	if !trust.IsVerification(err) || !strings.Contains(err.Error(), "root v2 rotated it out") {
		t.Fatalf("refresh with the old timestamp key: %v", err)
	}
	_, err = trust.Refresh(ctx, dir, trust.RefreshOptions{Timestamp: ts2.Signer, Snapshot: k.snapshot.Signer, Publish: true})
	if !trust.IsVerification(err) || !strings.Contains(err.Error(), "rotated it out") {
		t.Fatalf("refresh with the old snapshot key: %v", err)
	}
	r, err := trust.Refresh(ctx, dir, trust.RefreshOptions{Timestamp: ts2.Signer, Snapshot: snap2.Signer, Publish: true})
	if err != nil || !r.Refreshed || r.SnapshotV != 2 || r.TimestampV != 2 {
		t.Fatalf("refresh with the new keys: %+v %v", r, err)
	}
	if _, err := trust.Verify(ctx, dir, trust.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, dir); err != nil {
		t.Fatalf("ceremony verify: %v", err)
	}
	// A key may not be offline and online at once.
	_, err = Rotate(ctx, RotateOptions{Dir: dir, TimestampKey: k.targets, Keys: []*hsm.Key{k.root[0], k.root[1]}})
	if err == nil || !strings.Contains(err.Error(), "offline key must not also be an online key") {
		t.Fatalf("targets key made the timestamp key: %v", err)
	}
	// --remove-key of a key no role names.
	_, err = Rotate(ctx, RotateOptions{Dir: dir, RemoveKeys: []string{strings.Repeat("ab", 32)}, Keys: []*hsm.Key{k.root[0], k.root[1]}})
	if err == nil || !strings.Contains(err.Error(), "no role") {
		t.Fatalf("removing an unknown key: %v", err)
	}
}

// Raising the targets threshold re-signs the targets in the same sitting,
// and needs the new threshold of targets keys present.
func TestRotateTargetsThreshold(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t)
	if _, err := Init(ctx, twoOfThree(dir, k, time.Time{})); err != nil {
		t.Fatal(err)
	}
	t2 := testkeys.New(t, "targets2.key")
	rot := RotateOptions{Dir: dir, AddTargetsKeys: []*hsm.Key{t2}, TargetsThreshold: 2, Keys: []*hsm.Key{k.root[0], k.root[1], k.targets}}
	if _, err := Rotate(ctx, rot); !trust.IsVerification(err) {
		t.Fatalf("2-of-2 targets re-signed by one key: %v", err)
	}
	rot.Keys = append(rot.Keys, t2)
	res, err := Rotate(ctx, rot)
	if err != nil {
		t.Fatal(err)
	}
	if res.TargetsVersion != 2 || len(res.TargetsSignedBy) != 2 || res.Roles[trust.Targets].Threshold != 2 {
		t.Fatalf("rotation %+v", res)
	}
	st, err := trust.LoadState(ctx, dir)
	if err != nil || st.Targets.Signed.Version != 2 {
		t.Fatalf("state after the rotation: %v", err)
	}
	if _, err := Verify(ctx, dir); err != nil {
		t.Fatalf("ceremony verify: %v", err)
	}
}
