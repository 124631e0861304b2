package trust

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/internal/atomicfile"
)

// record is the private memory of what this side has published: the public
// metadata/ folder can be rolled back by anyone who can write to it (or a
// careless restore), so rollback is judged against this, not against the
// timestamp.json on disk. It lives in StateDir and is only ever raised.
type record struct {
	Timestamp int64 `json:"timestamp"`
	Snapshot  int64 `json:"snapshot"`
	Targets   int64 `json:"targets"`
}

const recordFile = "published.json"

func readRecord(dir string) (record, error) {
	var r record
	b, err := readBounded(filepath.Join(dir, StateDir, recordFile), 4096)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", recordFile, err)
	}
	return r, nil
}

// raiseRecord stores the versions a newly published timestamp makes
// current, never lowering any.
func raiseRecord(dir string, ts *metadata.Metadata[metadata.TimestampType], snap *metadata.Metadata[metadata.SnapshotType]) error {
	old, err := readRecord(dir)
	if err != nil {
		return err
	}
	r := record{Timestamp: ts.Signed.Version}
	if m, ok := ts.Signed.Meta[Snapshot+".json"]; ok && m != nil {
		r.Snapshot = m.Version
	}
	if snap == nil || snap.Signed.Version != r.Snapshot {
		b, err := readMeta(dir, Snapshot, r.Snapshot)
		if err != nil {
			return fmt.Errorf("recording the published versions: %w", err)
		}
		if snap, err = metadata.Snapshot().FromBytes(b); err != nil {
			return fmt.Errorf("recording the published versions: %w", err)
		}
	}
	r.Targets = snapshotTargets(snap)
	r.Timestamp, r.Snapshot, r.Targets = max(r.Timestamp, old.Timestamp), max(r.Snapshot, old.Snapshot), max(r.Targets, old.Targets)
	if err := ensureStateDir(dir); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, StateDir, recordFile), b, 0o600)
}

// checkRecord refuses a repository whose published metadata is older than
// what this side has published before.
func checkRecord(dir string, st *State) error {
	r, err := readRecord(dir)
	if err != nil {
		return err
	}
	var ts, snap int64
	if st.Timestamp != nil {
		ts = st.Timestamp.Signed.Version
	}
	if st.Snapshot != nil {
		snap = st.Snapshot.Signed.Version
	}
	switch {
	case ts < r.Timestamp:
		return &VerificationError{What: Timestamp, Version: ts, Reason: fmt.Sprintf("rolled back: this repository published timestamp v%d (metadata/ was restored from an older copy, or damaged)", r.Timestamp)}
	case snap < r.Snapshot:
		return &VerificationError{What: Snapshot, Version: snap, Reason: fmt.Sprintf("rolled back: this repository published snapshot v%d", r.Snapshot)}
	case st.PublishedTargets < r.Targets:
		return &VerificationError{What: Targets, Version: st.PublishedTargets, Reason: fmt.Sprintf("rolled back: this repository published targets v%d", r.Targets)}
	}
	return nil
}

// UpdatePin pins root as the trusted root when it is newer than the pinned
// one: once verified, an older root is never trusted again here, even if
// newer root files disappear from metadata/.
func UpdatePin(dir string, root *metadata.Metadata[metadata.RootType]) error {
	b, err := readBounded(filepath.Join(dir, StateDir, pinnedRootFile), MaxRootSize)
	if err == nil {
		if pinned, err := metadata.Root().FromBytes(b); err == nil && pinned.Signed.Version >= root.Signed.Version {
			return nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return pinRoot(dir, root)
}

// Pinned reports whether dir has a pinned root. Without one, the first
// verification trusts metadata/1.root.json as found.
func Pinned(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, StateDir, pinnedRootFile))
	return err == nil
}
