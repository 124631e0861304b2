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
	// Roots are the root versions after v1 this side has: a refresh bundle
	// carries them, so a rotation of the online keys reaches the site.
	Roots []RootFile `json:"-"`
}

// Refresh re-signs the timestamp when it is due, and the snapshot when its
// own expiry would come before the new timestamp's (a client checks both).
// It verifies the repository first — every signature, version and the
// snapshot's targets version, with go-tuf — and verifies the result as a
// client would before publishing. Versions only go up. It takes the
// repository's lock.
func Refresh(ctx context.Context, dir string, o RefreshOptions) (*RefreshResult, error) {
	o.defaults()
	if o.Timestamp == nil {
		return nil, fmt.Errorf("refresh needs the timestamp key")
	}
	st, unlock, err := LockState(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// The timestamp key given must be the one root trusts: a wrong key
	// would publish a timestamp every client refuses.
	if err := CheckRoleKey(st.Chain(), Timestamp, o.Timestamp.Public()); err != nil {
		return nil, err
	}
	d := refreshDue(st, o)
	if !d.timestamp && !d.snapshot {
		res := &RefreshResult{Reason: d.reason}
		res.TimestampV, res.TimestampEx = st.Timestamp.Signed.Version, st.Timestamp.Signed.Expires
		res.SnapshotV, res.SnapshotEx = st.Snapshot.Signed.Version, st.Snapshot.Signed.Expires
		return res, nil
	}
	pub, err := refreshed(st, o, d)
	if err != nil {
		return nil, err
	}
	if err := VerifyPublication(ctx, dir, pub, offlineValid(o.Now, st.Root, d.targets)); err != nil {
		return nil, fmt.Errorf("the refreshed repository does not verify: %w", err)
	}
	res := &RefreshResult{Refreshed: true, Reason: d.reason, Timestamp: pub.Timestamp, Snapshot: pub.Snapshot}
	snap := st.Snapshot
	if pub.Snapshot != nil {
		snap = pub.Snapshot
	}
	res.TimestampV, res.TimestampEx = pub.Timestamp.Signed.Version, pub.Timestamp.Signed.Expires
	for v := int64(2); v <= st.Root.Signed.Version; v++ {
		if b, ok := st.RootRaw[v]; ok {
			res.Roots = append(res.Roots, RootFile{Version: v, Bytes: b})
		}
	}
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

func (o *RefreshOptions) defaults() {
	if o.Now.IsZero() {
		o.Now = time.Now()
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
}

// due is what a refresh must re-sign, and why.
type due struct {
	timestamp, snapshot bool
	reason              string
	// targets is what the snapshot names: a refresh re-signs what is
	// published and never publishes a targets version by itself (one lying
	// in metadata/ may be from an approval that was never imported). Before
	// the first snapshot, targets v1 from the ceremony is what there is.
	targets *metadata.Metadata[metadata.TargetsType]
}

func refreshDue(st *State, o RefreshOptions) due {
	d := due{targets: st.Targets}
	if st.Published != nil {
		d.targets = st.Published
	}
	now, newTSExpires := o.Now, ExpiresAt(o.Now, o.TimestampExpiry)
	d.timestamp = st.Timestamp == nil || o.Force || st.Rotated[Timestamp] > 0 || !st.Timestamp.Signed.Expires.After(now.Add(o.IfExpiringWithin))
	d.snapshot = st.Snapshot == nil || st.Rotated[Snapshot] > 0 || st.Snapshot.Signed.Expires.Before(newTSExpires) || snapshotTargets(st.Snapshot) != d.targets.Signed.Version
	switch {
	case st.Rotated[Snapshot] > 0:
		d.reason = fmt.Sprintf("root v%d rotated the snapshot key", st.Rotated[Snapshot])
	case d.snapshot:
		d.reason = "the snapshot expires before a new timestamp would, or is missing"
	case st.Timestamp == nil:
		d.reason = "no timestamp yet"
	case o.Force:
		d.reason = "forced"
	case st.Rotated[Timestamp] > 0:
		d.reason = fmt.Sprintf("root v%d rotated the timestamp key", st.Rotated[Timestamp])
	case d.timestamp:
		d.reason = fmt.Sprintf("the timestamp expires %s, within %s", st.Timestamp.Signed.Expires.UTC().Format(time.RFC3339), FormatDuration(o.IfExpiringWithin))
	default:
		d.reason = fmt.Sprintf("nothing due: the timestamp expires %s", st.Timestamp.Signed.Expires.UTC().Format(time.RFC3339))
	}
	return d
}

// refreshed builds and signs the next timestamp, and the next snapshot
// when it is due.
func refreshed(st *State, o RefreshOptions, d due) (Publication, error) {
	pub := Publication{}
	snap := st.Snapshot
	if d.snapshot {
		if o.Snapshot == nil {
			return pub, fmt.Errorf("%w (it expires %s, before the new timestamp)", ErrSnapshotKeyNeeded, expiryOf(st.Snapshot))
		}
		if err := CheckRoleKey(st.Chain(), Snapshot, o.Snapshot.Public()); err != nil {
			return pub, err
		}
		snap = NextSnapshot(st.Snapshot, d.targets.Signed.Version, ExpiresAt(o.Now, o.SnapshotExpiry))
		if err := Sign(snap, Snapshot, o.Snapshot); err != nil {
			return pub, err
		}
		pub.Snapshot = snap
		if d.targets.Signed.Version != st.PublishedTargets {
			pub.Targets = d.targets
		}
	}
	pub.Timestamp = NextTimestamp(st.Timestamp, snap.Signed.Version, ExpiresAt(o.Now, o.TimestampExpiry))
	return pub, Sign(pub.Timestamp, Timestamp, o.Timestamp)
}

// offlineValid is when to verify a refresh as a client would: now, or just
// before root or targets expire if they already have. Their expiry is not
// a refresh's to fix (status and exit code 4 report it); everything else —
// signatures, thresholds, versions, the new online roles' expiry — is
// checked.
func offlineValid(now time.Time, root *metadata.Metadata[metadata.RootType], targets *metadata.Metadata[metadata.TargetsType]) time.Time {
	at := now
	for _, e := range []time.Time{root.Signed.Expires, targets.Signed.Expires} {
		if !e.After(at) {
			at = e.Add(-time.Second)
		}
	}
	return at
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
	return ApplyRefreshRoots(ctx, dir, nil, timestamp, snapshot, now)
}

// ApplyRefreshRoots is ApplyRefresh for a refresh bundle that also carries
// root versions (a rotation of the online keys on the signer's side): each
// must follow on from the trusted root as a client updates to it, and the
// timestamp and snapshot are verified against the newest.
func ApplyRefreshRoots(ctx context.Context, dir string, roots []RootFile, timestamp, snapshot []byte, now time.Time) (*RefreshResult, error) {
	if now.IsZero() {
		now = time.Now()
	}
	st, unlock, err := LockState(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	root, newRoots, err := st.AcceptRoots(roots)
	if err != nil {
		return nil, err
	}
	var trustedTS int64
	if st.Timestamp != nil {
		trustedTS = st.Timestamp.Signed.Version
	}
	ts, err := acceptNewer[metadata.TimestampType](root, Timestamp, timestamp, trustedTS, " (a replayed or stale refresh)")
	if err != nil {
		return nil, err
	}
	pub := Publication{Roots: newRoots, Timestamp: ts}
	if pub.Snapshot, err = refreshSnapshot(st, root, ts, snapshot); err != nil {
		return nil, err
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

// refreshSnapshot checks the snapshot a refresh bundle carries (nil: none)
// against root, the timestamp that names it and what is published.
func refreshSnapshot(st *State, root *metadata.Metadata[metadata.RootType], ts *metadata.Metadata[metadata.TimestampType], snapshot []byte) (*metadata.Metadata[metadata.SnapshotType], error) {
	named := int64(0)
	if m, ok := ts.Signed.Meta[Snapshot+".json"]; ok && m != nil {
		named = m.Version
	}
	var publishedSnap int64
	if st.Snapshot != nil {
		publishedSnap = st.Snapshot.Signed.Version
	}
	if snapshot == nil {
		if named != publishedSnap {
			return nil, &VerificationError{What: Timestamp, Version: ts.Signed.Version, Reason: fmt.Sprintf("names snapshot v%d, but the published one is v%d and the refresh bundle carries none", named, publishedSnap)}
		}
		return nil, nil
	}
	sn, err := acceptNewer[metadata.SnapshotType](root, Snapshot, snapshot, publishedSnap, "")
	if err != nil {
		return nil, err
	}
	if named != sn.Signed.Version {
		return nil, &VerificationError{What: Timestamp, Version: ts.Signed.Version, Reason: fmt.Sprintf("names snapshot v%d, not the v%d the refresh bundle carries", named, sn.Signed.Version)}
	}
	if t := snapshotTargets(sn); t < st.PublishedTargets {
		return nil, &VerificationError{What: Snapshot, Version: sn.Signed.Version, Reason: fmt.Sprintf("names targets v%d, older than the published v%d", t, st.PublishedTargets)}
	}
	return sn, nil
}

// acceptNewer parses role's metadata made elsewhere, verifies it against
// root and refuses a version not above the trusted one (0: none yet).
func acceptNewer[T signedRole](root *metadata.Metadata[metadata.RootType], role string, raw []byte, trusted int64, why string) (*metadata.Metadata[T], error) {
	var m metadata.Metadata[T]
	if _, err := m.FromBytes(raw); err != nil {
		return nil, refusal(role, 0, err)
	}
	v := signedVersion(&m)
	if err := root.VerifyDelegate(role, &m); err != nil {
		return nil, refusal(role, v, err)
	}
	if trusted > 0 && v <= trusted {
		return nil, &VerificationError{What: role, Version: v, Reason: fmt.Sprintf("not above the trusted %s v%d%s", role, trusted, why)}
	}
	return &m, nil
}

// snapshotTargets is the targets version a snapshot names (0 if none).
func snapshotTargets(s *metadata.Metadata[metadata.SnapshotType]) int64 {
	if m, ok := s.Signed.Meta[Targets+".json"]; ok && m != nil {
		return m.Version
	}
	return 0
}
