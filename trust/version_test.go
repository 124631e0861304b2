package trust

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestRefreshBundleVersionOverflowRefused (issue 11, finding 1): a refresh
// bundle whose timestamp, signed by the timestamp key, has version 2^63-1
// is refused: publishing it would leave no next version (the following one
// would wrap to -2^63 and every client would call it a rollback).
func TestRefreshBundleVersionOverflowRefused(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, time.Now())
	for _, v := range []int64{math.MaxInt64, MaxVersion + 1} {
		ts := metadata.Timestamp(r.ts.Signed.Expires)
		ts.Signed.Version = v
		ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(1)
		must(t, Sign(ts, Timestamp, r.tsKey.Signer))
		b, _ := ts.ToBytes(true)
		_, err := ApplyRefresh(ctx, r.dir, b, nil, time.Time{})
		if !IsVerification(err) || !strings.Contains(err.Error(), "version") {
			t.Fatalf("timestamp v%d: %v, want a refusal naming the version", v, err)
		}
		if got := tsVersion(t, r.dir); got != 1 {
			t.Fatalf("timestamp v%d published", got)
		}
	}
	// The repository still refreshes normally.
	o := refreshOpts(r)
	o.Force = true
	if _, err := Refresh(ctx, r.dir, o); err != nil {
		t.Fatal(err)
	}
}

// TestPublicationNeverGoesDown (issue 11, finding 1): VerifyPublication
// refuses a publication at or below a recorded version, or whose next
// version would overflow, whatever metadata/ holds.
func TestPublicationNeverGoesDown(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, time.Now())
	must(t, r.bump(t, 5, r.snapKey.Signer, r.tsKey.Signer))
	for _, tc := range []struct {
		name          string
		snapV, tsV    int64
		wantRole, msg string
	}{
		{"timestamp below the record", 6, 3, Timestamp, "v5"},
		{"timestamp equal to the record", 6, 5, Timestamp, "v5"},
		{"snapshot below the record", 4, 6, Snapshot, "v5"},
		{"wrapped to negative", 6, math.MinInt64, Timestamp, "version"},
		{"beyond the largest version", 6, MaxVersion + 1, Timestamp, "version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := metadata.Snapshot(r.snap.Signed.Expires)
			snap.Signed.Version = tc.snapV
			snap.Signed.Meta["targets.json"] = metadata.MetaFile(1)
			must(t, Sign(snap, Snapshot, r.snapKey.Signer))
			ts := metadata.Timestamp(r.ts.Signed.Expires)
			ts.Signed.Version = tc.tsV
			ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(tc.snapV)
			must(t, Sign(ts, Timestamp, r.tsKey.Signer))
			err := VerifyPublication(ctx, r.dir, Publication{Snapshot: snap, Timestamp: ts}, time.Now())
			var ve *VerificationError
			if !errors.As(err, &ve) || ve.What != tc.wantRole || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want a %s refusal saying %q", err, tc.wantRole, tc.msg)
			}
		})
	}
}
