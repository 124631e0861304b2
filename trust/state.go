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
	// The files of the chain as far as they are here; the pinned root's
	// own bytes stand in for its file (the pin is what is trusted).
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
	if b, err := src.ReadMeta(Timestamp, 0); err == nil {
		ts, err := metadata.Timestamp().FromBytes(b)
		if err != nil {
			return nil, refusal(Timestamp, 0, err)
		}
		if err := st.verifyOnline(dir, Timestamp, FileName(Timestamp, 0), b, ts); err != nil {
			return nil, refusal(Timestamp, ts.Signed.Version, err)
		}
		st.Timestamp = ts
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// Only the snapshot a timestamp names is published: one without a
	// timestamp is an orphan of an interrupted publish, and is replaced.
	snapVer := int64(0)
	if st.Timestamp != nil {
		if m, ok := st.Timestamp.Signed.Meta[Snapshot+".json"]; ok {
			snapVer = m.Version
		}
	}
	if snapVer > 0 {
		b, err := src.ReadMeta(Snapshot, snapVer)
		if err != nil {
			return nil, missing(Snapshot, err)
		}
		sn, err := metadata.Snapshot().FromBytes(b)
		if err != nil {
			return nil, refusal(Snapshot, snapVer, err)
		}
		if err := st.verifyOnline(dir, Snapshot, FileName(Snapshot, snapVer), b, sn); err != nil {
			return nil, refusal(Snapshot, snapVer, err)
		}
		if sn.Signed.Version != snapVer {
			return nil, &VerificationError{What: Snapshot, Version: sn.Signed.Version, Reason: fmt.Sprintf("file %s holds version %d", FileName(Snapshot, snapVer), sn.Signed.Version)}
		}
		st.Snapshot = sn
		if m, ok := sn.Signed.Meta[Targets+".json"]; ok {
			st.PublishedTargets = m.Version
		}
	}
	for v := max(highestVersion(dir, Targets), st.PublishedTargets); v > 0; v-- {
		tg, err := st.LoadTargetsVersion(dir, v)
		// A version over the client's size limit that was never published
		// is a signer's record of an approval the isolated side refused:
		// build on the one before (a new version is numbered above it).
		if errors.Is(err, ErrTooLarge) && v > st.PublishedTargets {
			continue
		}
		if err != nil {
			return nil, err
		}
		st.Targets = tg
		break
	}
	if st.Targets == nil {
		return nil, &VerificationError{What: Targets, Reason: "no targets metadata", Err: ErrNotInitialised}
	}
	if err := checkRecord(dir, st); err != nil {
		return nil, err
	}
	if st.PublishedTargets == st.Targets.Signed.Version {
		st.Published = st.Targets
	} else if st.PublishedTargets > 0 {
		b, err := src.ReadMeta(Targets, st.PublishedTargets)
		if err != nil {
			return nil, missing(Targets, err)
		}
		tg, err := metadata.Targets().FromBytes(b)
		if err == nil {
			err = st.verifyOnline(dir, Targets, FileName(Targets, st.PublishedTargets), b, tg)
		}
		if err != nil {
			return nil, refusal(Targets, st.PublishedTargets, err)
		}
		st.Published = tg
	}
	return st, ctx.Err()
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
	b, err := readMeta(dir, Targets, v)
	if errors.Is(err, ErrTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, missing(Targets, err)
	}
	tg, err := metadata.Targets().FromBytes(b)
	if err == nil {
		err = st.verifyOnline(dir, Targets, FileName(Targets, v), b, tg)
	}
	if err == nil && tg.Signed.Version != v {
		err = fmt.Errorf("file %s holds version %d", FileName(Targets, v), tg.Signed.Version)
	}
	if err != nil {
		return nil, refusal(Targets, v, err)
	}
	return tg, nil
}
