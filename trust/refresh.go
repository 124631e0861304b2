package trust

import (
	"context"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
)

// RefreshOptions configure Refresh.
type RefreshOptions struct {
	Timestamp hsm.Signer
	// Snapshot is needed only when the snapshot itself is due.
	Snapshot hsm.Signer
	// TimestampExpiry and SnapshotExpiry: how long the new versions last.
	// Zero: DefaultExpiry.
	TimestampExpiry, SnapshotExpiry time.Duration
	// IfExpiringWithin: the timestamp is due when it expires within this.
	// Zero: DefaultWarn's timestamp window (6h).
	IfExpiringWithin time.Duration
	// Force refreshes the timestamp even when it is not due.
	Force bool
	// Now is the clock. Zero: time.Now().
	Now time.Time
	// Publish writes the result into the repository (false: build only).
	Publish bool
	// Deliver, when set with Publish, is handed the verified result and the
	// function that publishes it, under the lock: it calls publish at the
	// moment it chooses (between writing a refresh bundle and renaming it
	// into place, so that the versions are recorded before the bundle
	// appears). Nil: publish at once.
	Deliver func(res *RefreshResult, publish func() error) error
}

// RefreshResult says what Refresh did.
type RefreshResult struct {
	Refreshed bool `json:"refreshed"`
	// Reason says why (or why not).
	Reason      string                                     `json:"reason"`
	Timestamp   *metadata.Metadata[metadata.TimestampType] `json:"-"`
	Snapshot    *metadata.Metadata[metadata.SnapshotType]  `json:"-"`
	TimestampV  int64                                      `json:"timestamp_version"`
	SnapshotV   int64                                      `json:"snapshot_version"`
	TimestampEx time.Time                                  `json:"timestamp_expires"`
	SnapshotEx  time.Time                                  `json:"snapshot_expires"`
}

// Refresh re-signs the timestamp when it is due, and the snapshot when its
// own expiry would come before the new timestamp's (a client checks both).
// It verifies the repository first — every signature, version and the
// snapshot's targets version, with go-tuf — and verifies the result as a
// client would before publishing. Versions only go up. It takes the
// repository's lock.
func Refresh(ctx context.Context, dir string, o RefreshOptions) (*RefreshResult, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	def := DefaultExpiry()
	if o.TimestampExpiry == 0 {
		o.TimestampExpiry = def[Timestamp]
	}
	if o.SnapshotExpiry == 0 {
		o.SnapshotExpiry = def[Snapshot]
	}
	if o.IfExpiringWithin == 0 {
		o.IfExpiringWithin = DefaultWarn()[Timestamp]
	}
	if o.Timestamp == nil {
		return nil, fmt.Errorf("refresh needs the timestamp key")
	}
	unlock, err := Lock(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := LoadState(ctx, dir)
	if err != nil {
		return nil, err
	}
	// The timestamp key given must be the one root trusts: a wrong key
	// would publish a timestamp every client refuses.
	if err := CheckRoleKey(st.Chain(), Timestamp, o.Timestamp.Public()); err != nil {
		return nil, err
	}
	res := &RefreshResult{}
	// A refresh re-signs what is published; it never publishes a targets
	// version by itself (one lying in metadata/ may be from an approval
	// that was never imported). Before the first snapshot, targets v1 from
	// the ceremony is what there is.
	targets := st.Targets
	if st.Published != nil {
		targets = st.Published
	}
	newTSExpires := ExpiresAt(now, o.TimestampExpiry)
	tsDue := st.Timestamp == nil || o.Force || st.Rotated[Timestamp] > 0 || !st.Timestamp.Signed.Expires.After(now.Add(o.IfExpiringWithin))
	snapDue := st.Snapshot == nil || st.Rotated[Snapshot] > 0 || st.Snapshot.Signed.Expires.Before(newTSExpires) || snapshotTargets(st.Snapshot) != targets.Signed.Version
	switch {
	case st.Rotated[Snapshot] > 0:
		res.Reason = fmt.Sprintf("root v%d rotated the snapshot key", st.Rotated[Snapshot])
	case snapDue:
		res.Reason = "the snapshot expires before a new timestamp would, or is missing"
	case st.Timestamp == nil:
		res.Reason = "no timestamp yet"
	case o.Force:
		res.Reason = "forced"
	case st.Rotated[Timestamp] > 0:
		res.Reason = fmt.Sprintf("root v%d rotated the timestamp key", st.Rotated[Timestamp])
	case tsDue:
		res.Reason = fmt.Sprintf("the timestamp expires %s, within %s", st.Timestamp.Signed.Expires.UTC().Format(time.RFC3339), FormatDuration(o.IfExpiringWithin))
	default:
		res.Reason = fmt.Sprintf("nothing due: the timestamp expires %s", st.Timestamp.Signed.Expires.UTC().Format(time.RFC3339))
		res.TimestampV, res.TimestampEx = st.Timestamp.Signed.Version, st.Timestamp.Signed.Expires
		res.SnapshotV, res.SnapshotEx = st.Snapshot.Signed.Version, st.Snapshot.Signed.Expires
		return res, nil
	}
	pub := Publication{}
	snap := st.Snapshot
	if snapDue {
		if o.Snapshot == nil {
			return nil, fmt.Errorf("%w (it expires %s, before the new timestamp)", ErrSnapshotKeyNeeded, expiryOf(st.Snapshot))
		}
		if err := CheckRoleKey(st.Chain(), Snapshot, o.Snapshot.Public()); err != nil {
			return nil, err
		}
		next := NextSnapshot(st.Snapshot, targets.Signed.Version, ExpiresAt(now, o.SnapshotExpiry))
		if err := Sign(next, Snapshot, o.Snapshot); err != nil {
			return nil, err
		}
		snap, pub.Snapshot = next, next
		if targets.Signed.Version != st.PublishedTargets {
			pub.Targets = targets
		}
	}
	ts := NextTimestamp(st.Timestamp, snap.Signed.Version, newTSExpires)
	if err := Sign(ts, Timestamp, o.Timestamp); err != nil {
		return nil, err
	}
	pub.Timestamp = ts
	// Verify as a client would. The offline roles' expiry is not ours to
	// fix here (status and our exit code 4 report it), so the check runs at
	// a moment both are still valid; everything else — signatures,
	// thresholds, versions, the new online roles' expiry — is checked.
	at := now
	for _, e := range []time.Time{st.Root.Signed.Expires, targets.Signed.Expires} {
		if !e.After(at) {
			at = e.Add(-time.Second)
		}
	}
	if err := VerifyPublication(ctx, dir, pub, at); err != nil {
		return nil, fmt.Errorf("the refreshed repository does not verify: %w", err)
	}
	res.Refreshed = true
	res.Timestamp, res.Snapshot = ts, pub.Snapshot
	res.TimestampV, res.TimestampEx = ts.Signed.Version, ts.Signed.Expires
	res.SnapshotV, res.SnapshotEx = snap.Signed.Version, snap.Signed.Expires
	if !o.Publish {
		return res, nil
	}
	publish := func() error {
		if err := Publish(ctx, dir, pub); err != nil {
			return err
		}
		return UpdatePin(dir, st.Root)
	}
	if o.Deliver != nil {
		return res, o.Deliver(res, publish)
	}
	return res, publish()
}

func expiryOf(s *metadata.Metadata[metadata.SnapshotType]) string {
	if s == nil {
		return "never (there is none)"
	}
	return s.Signed.Expires.UTC().Format(time.RFC3339)
}

// ApplyRefresh verifies a timestamp (and optionally a snapshot) made
// elsewhere — a refresh bundle from a signer for a site with no online
// key — and publishes them: each must be signed by root's keys for its role,
// newer than what this repository has, consistent with its targets, and the
// result must verify as a client would at now. It takes the repository's
// lock.
func ApplyRefresh(ctx context.Context, dir string, timestamp, snapshot []byte, now time.Time) (*RefreshResult, error) {
	if now.IsZero() {
		now = time.Now()
	}
	unlock, err := Lock(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := LoadState(ctx, dir)
	if err != nil {
		return nil, err
	}
	ts, err := metadata.Timestamp().FromBytes(timestamp)
	if err != nil {
		return nil, refusal(Timestamp, 0, err)
	}
	if err := st.Root.VerifyDelegate(Timestamp, ts); err != nil {
		return nil, refusal(Timestamp, ts.Signed.Version, err)
	}
	if st.Timestamp != nil && ts.Signed.Version <= st.Timestamp.Signed.Version {
		return nil, &VerificationError{What: Timestamp, Version: ts.Signed.Version, Reason: fmt.Sprintf("not above the trusted timestamp v%d (a replayed or stale refresh)", st.Timestamp.Signed.Version)}
	}
	named := int64(0)
	if m, ok := ts.Signed.Meta[Snapshot+".json"]; ok && m != nil {
		named = m.Version
	}
	var publishedSnap int64
	if st.Snapshot != nil {
		publishedSnap = st.Snapshot.Signed.Version
	}
	pub := Publication{Timestamp: ts}
	if snapshot == nil && named != publishedSnap {
		return nil, &VerificationError{What: Timestamp, Version: ts.Signed.Version, Reason: fmt.Sprintf("names snapshot v%d, but the published one is v%d and the refresh bundle carries none", named, publishedSnap)}
	}
	if snapshot != nil {
		sn, err := metadata.Snapshot().FromBytes(snapshot)
		if err != nil {
			return nil, refusal(Snapshot, 0, err)
		}
		if err := st.Root.VerifyDelegate(Snapshot, sn); err != nil {
			return nil, refusal(Snapshot, sn.Signed.Version, err)
		}
		if st.Snapshot != nil && sn.Signed.Version <= st.Snapshot.Signed.Version {
			return nil, &VerificationError{What: Snapshot, Version: sn.Signed.Version, Reason: fmt.Sprintf("not above the trusted snapshot v%d", st.Snapshot.Signed.Version)}
		}
		if named != sn.Signed.Version {
			return nil, &VerificationError{What: Timestamp, Version: ts.Signed.Version, Reason: fmt.Sprintf("names snapshot v%d, not the v%d the refresh bundle carries", named, sn.Signed.Version)}
		}
		if t := snapshotTargets(sn); t < st.PublishedTargets {
			return nil, &VerificationError{What: Snapshot, Version: sn.Signed.Version, Reason: fmt.Sprintf("names targets v%d, older than the published v%d", t, st.PublishedTargets)}
		}
		pub.Snapshot = sn
	}
	if err := VerifyPublication(ctx, dir, pub, now); err != nil {
		return nil, err
	}
	if err := Publish(ctx, dir, pub); err != nil {
		return nil, err
	}
	res := &RefreshResult{Refreshed: true, Reason: "refresh bundle applied", Timestamp: ts, Snapshot: pub.Snapshot,
		TimestampV: ts.Signed.Version, TimestampEx: ts.Signed.Expires}
	if pub.Snapshot != nil {
		res.SnapshotV, res.SnapshotEx = pub.Snapshot.Signed.Version, pub.Snapshot.Signed.Expires
	} else if st.Snapshot != nil {
		res.SnapshotV, res.SnapshotEx = st.Snapshot.Signed.Version, st.Snapshot.Signed.Expires
	}
	return res, nil
}

// snapshotTargets is the targets version a snapshot names (0 if none).
func snapshotTargets(s *metadata.Metadata[metadata.SnapshotType]) int64 {
	if m, ok := s.Signed.Meta[Targets+".json"]; ok && m != nil {
		return m.Version
	}
	return 0
}
