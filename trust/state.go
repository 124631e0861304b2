package trust

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// State is a repository's newest metadata whose signatures verify, loaded
// to build the next version. Expiry is deliberately not checked here: the
// roles about to be replaced may have lapsed (a timestamp nobody refreshed),
// and what is built next is verified in full, expiry included, before it is
// published.
type State struct {
	Root     *metadata.Metadata[metadata.RootType]
	RootRaw  map[int64][]byte // the whole chain, version → bytes
	Targets  *metadata.Metadata[metadata.TargetsType]
	Snapshot *metadata.Metadata[metadata.SnapshotType]
	// Timestamp is nil before the isolated side first signs one.
	Timestamp *metadata.Metadata[metadata.TimestampType]
	// PublishedTargets is the targets version the snapshot names (0 if no
	// snapshot); Targets may be newer on the signer's side, which records
	// each targets version it signs.
	PublishedTargets int64
	// Published is that version's metadata (nil when nothing is published).
	Published *metadata.Metadata[metadata.TargetsType]
	// Rotated names the online roles (snapshot, timestamp) whose metadata
	// here was signed before the root version given rotated their keys:
	// the next import or refresh must sign them anew.
	Rotated map[string]int64
}

// LoadState verifies the root chain from the pinned root and loads the
// newest targets, snapshot and timestamp that verify against it.
func LoadState(ctx context.Context, dir string) (*State, error) {
	st, err := loadRoots(ctx, dir)
	if err != nil {
		return nil, err
	}
	if err := st.loadTimestamp(dir); err != nil {
		return nil, err
	}
	if err := st.loadSnapshot(dir); err != nil {
		return nil, err
	}
	if err := st.loadTargets(dir); err != nil {
		return nil, err
	}
	if err := checkRecord(dir, st); err != nil {
		return nil, err
	}
	if err := st.loadPublished(dir); err != nil {
		return nil, err
	}
	return st, ctx.Err()
}

// LockState takes dir's lock and loads its state: how every job that
// changes a repository starts (see the package documentation). The caller
// calls unlock when done; on an error nothing is held.
func LockState(ctx context.Context, dir string) (st *State, unlock func(), err error) {
	unlock, err = Lock(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	if st, err = LoadState(ctx, dir); err != nil {
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

// loadRoots walks the root chain from the pinned root and keeps the bytes
// of every version here: the pinned root's own bytes stand in for its file
// (the pin is what is trusted).
func loadRoots(ctx context.Context, dir string) (*State, error) {
	anchor, err := TrustAnchor(dir)
	if err != nil {
		return nil, err
	}
	src := DirSource(dir)
	tm, err := walkRoots(ctx, anchor, src)
	if err != nil {
		return nil, err
	}
	st := &State{Root: tm.Root, RootRaw: map[int64][]byte{}}
	if a, err := metadata.Root().FromBytes(anchor); err == nil {
		st.RootRaw[a.Signed.Version] = anchor
	}
	for v := int64(1); v <= tm.Root.Signed.Version; v++ {
		b, err := src.ReadMeta(Root, v)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("root chain: %w", err)
		}
		st.RootRaw[v] = b
	}
	if _, ok := st.RootRaw[tm.Root.Signed.Version]; !ok {
		return nil, missing(Root, fmt.Errorf("%s: %w", FileName(Root, tm.Root.Signed.Version), fs.ErrNotExist))
	}
	return st, nil
}

// loadTimestamp loads timestamp.json, if there is one yet.
func (st *State) loadTimestamp(dir string) error {
	ts, err := readRole[metadata.TimestampType](st, dir, Timestamp, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	st.Timestamp = ts
	return err
}

// loadSnapshot loads the snapshot the timestamp names: only that one is
// published (one no timestamp names is an orphan of an interrupted
// publish, and is replaced).
func (st *State) loadSnapshot(dir string) error {
	if st.Timestamp == nil {
		return nil
	}
	m, ok := st.Timestamp.Signed.Meta[Snapshot+".json"]
	if !ok || m.Version <= 0 {
		return nil
	}
	sn, err := readRole[metadata.SnapshotType](st, dir, Snapshot, m.Version)
	if err != nil {
		return err
	}
	st.Snapshot, st.PublishedTargets = sn, snapshotTargets(sn)
	return nil
}

// loadTargets loads the newest targets version here (the signer's side may
// hold one newer than the published one).
func (st *State) loadTargets(dir string) error {
	for v := max(highestVersion(dir, Targets), st.PublishedTargets); v > 0; v-- {
		tg, err := st.LoadTargetsVersion(dir, v)
		// A version over the client's size limit that was never published
		// is a signer's record of an approval the isolated side refused:
		// build on the one before (a new version is numbered above it).
		if errors.Is(err, ErrTooLarge) && v > st.PublishedTargets {
			continue
		}
		st.Targets = tg
		return err
	}
	return &VerificationError{What: Targets, Reason: "no targets metadata", Err: ErrNotInitialised}
}

// loadPublished loads the targets version the snapshot names.
func (st *State) loadPublished(dir string) error {
	switch {
	case st.PublishedTargets == st.Targets.Signed.Version:
		st.Published = st.Targets
	case st.PublishedTargets > 0:
		tg, err := readRole[metadata.TargetsType](st, dir, Targets, st.PublishedTargets)
		if err != nil {
			return err
		}
		st.Published = tg
	}
	return nil
}

// readRole reads role's file of version v (0: timestamp.json), parses it
// and verifies it against st's root (or the note of a rotation). A missing
// file is a refusal wrapping fs.ErrNotExist; anything else that fails is a
// refusal naming the version.
func readRole[T signedRole](st *State, dir, role string, v int64) (*metadata.Metadata[T], error) {
	b, err := readMeta(dir, role, v)
	if err != nil {
		return nil, missing(role, err)
	}
	var m metadata.Metadata[T]
	if _, err := m.FromBytes(b); err != nil {
		return nil, refusal(role, v, err)
	}
	got := signedVersion(&m)
	if err := st.verifyOnline(dir, role, FileName(role, v), b, &m); err != nil {
		return nil, refusal(role, got, err)
	}
	if v > 0 && got != v {
		return nil, &VerificationError{What: role, Version: got, Reason: fmt.Sprintf("file %s holds version %d", FileName(role, v), got)}
	}
	return &m, nil
}

func signedVersion[T signedRole](m *metadata.Metadata[T]) int64 {
	switch s := any(&m.Signed).(type) {
	case *metadata.TimestampType:
		return s.Version
	case *metadata.SnapshotType:
		return s.Version
	case *metadata.TargetsType:
		return s.Version
	}
	return 0
}

// RoleKey is one key a role trusts.
type RoleKey struct {
	ID     string
	Public crypto.PublicKey
}

// RoleKeys returns the keys root trusts for role, in root's order.
func RoleKeys(root *metadata.Metadata[metadata.RootType], role string) ([]RoleKey, error) {
	ids, _ := RoleKeyIDs(root, role)
	out := make([]RoleKey, 0, len(ids))
	for _, id := range ids {
		k, ok := root.Signed.Keys[id]
		if !ok {
			return nil, &VerificationError{What: Root, Version: root.Signed.Version, KeyIDs: []string{id}, Reason: fmt.Sprintf("lists %s key %s but does not define it", role, id)}
		}
		pub, err := k.ToPublicKey()
		if err != nil {
			return nil, fmt.Errorf("%s key %s: %w", role, id, err)
		}
		out = append(out, RoleKey{ID: id, Public: pub})
	}
	return out, nil
}

// RoleKeyIDs returns the key IDs root trusts for role and its threshold.
func RoleKeyIDs(root *metadata.Metadata[metadata.RootType], role string) ([]string, int) {
	r, ok := root.Signed.Roles[role]
	if !ok {
		return nil, 0
	}
	return append([]string(nil), r.KeyIDs...), r.Threshold
}

// LoadTargetsVersion reads targets version v from dir and verifies it
// against st's root: its signatures and that the file holds that version.
func (st *State) LoadTargetsVersion(dir string, v int64) (*metadata.Metadata[metadata.TargetsType], error) {
	return readRole[metadata.TargetsType](st, dir, Targets, v)
}
