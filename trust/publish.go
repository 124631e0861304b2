package trust

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/internal/atomicfile"
)

// Publication is one step of the repository: everything that must appear
// together. Nil fields are left as they are.
type Publication struct {
	Roots     []*metadata.Metadata[metadata.RootType] // new root versions, oldest first
	Targets   *metadata.Metadata[metadata.TargetsType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	// TargetFiles are target contents by target name, written first under
	// their consistent-snapshot names (TargetPath).
	TargetFiles map[string][]byte
}

// MaxTargetBase bounds the last path component of a target name: its file
// is "<sha256hex>.<name>" plus a temporary suffix while it is written, and
// must fit the 255 bytes a file name may hold: 255 - 65 (hash and dot) - 20.
const MaxTargetBase = 170

// CheckTargetName refuses a target name that cannot be a file under
// targets/: an empty, "." or ".." path component, an absolute path, or a
// last component too long for "<sha256hex>.<name>" and a temporary suffix.
func CheckTargetName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return fmt.Errorf("target name %q cannot be a file under %s/", name, TargetsDir)
	}
	parts := strings.Split(name, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return fmt.Errorf("target name %q cannot be a file under %s/ (path component %q)", name, TargetsDir, p)
		}
	}
	if len(parts[len(parts)-1]) > MaxTargetBase {
		return fmt.Errorf("target name %q: its last part is too long for a file name", name)
	}
	return nil
}

// TargetPath is where a target's content lives under consistent snapshots
// (TUF spec 5.7.3 as go-tuf's updater fetches it): DIR/targets/<dir>/<sha256hex>.<base>.
func TargetPath(dir, name string, data []byte) string {
	sum := sha256.Sum256(data)
	d, base := path.Split(name)
	return filepath.Join(dir, TargetsDir, filepath.FromSlash(d), hex.EncodeToString(sum[:])+"."+base)
}

// Publish writes p into dir so that a client never sees a half-written
// repository: versioned files first (roots, targets, snapshot), each to a
// temporary file that is fsynced and renamed, and timestamp.json last. Until
// timestamp.json is renamed, clients keep resolving the previous snapshot;
// a crash at any point leaves the published repository as it was, and the
// same publication can be written again.
//
// A versioned file is never replaced by different bytes, except an orphan
// left by an interrupted publish (a snapshot newer than the one timestamp.json
// names). The caller must hold the lock (Lock) and must have verified p.
func Publish(ctx context.Context, dir string, p Publication) error {
	if err := os.MkdirAll(filepath.Join(dir, MetadataDir), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", MetadataDir, err)
	}
	for name, data := range p.TargetFiles {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := CheckTargetName(name); err != nil {
			return err
		}
		tp := TargetPath(dir, name, data)
		if err := noLinksBelow(dir, tp); err != nil {
			return err
		}
		if _, err := os.Stat(tp); err == nil {
			continue // content-addressed: the same name and hash is the same bytes
		}
		if err := os.MkdirAll(filepath.Dir(tp), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", filepath.Dir(tp), err)
		}
		if err := atomicfile.Write(tp, data, 0o644); err != nil {
			return err
		}
	}
	if len(p.Roots) > 0 {
		if err := noteOnline(dir, p.Roots[0].Signed.Version); err != nil {
			return fmt.Errorf("noting the snapshot and timestamp before a root rotation: %w", err)
		}
	}
	published := publishedSnapshot(dir)
	if r, err := readRecord(dir); err == nil {
		published = max(published, r.Snapshot)
	}
	type file struct {
		role      string
		version   int64
		data      []byte
		immutable bool
	}
	var files []file
	for _, r := range p.Roots {
		b, err := r.ToBytes(true)
		if err != nil {
			return fmt.Errorf("encoding root v%d: %w", r.Signed.Version, err)
		}
		files = append(files, file{Root, r.Signed.Version, b, true})
	}
	if p.Targets != nil {
		b, err := p.Targets.ToBytes(true)
		if err != nil {
			return fmt.Errorf("encoding targets: %w", err)
		}
		files = append(files, file{Targets, p.Targets.Signed.Version, b, true})
	}
	if p.Snapshot != nil {
		b, err := p.Snapshot.ToBytes(true)
		if err != nil {
			return fmt.Errorf("encoding snapshot: %w", err)
		}
		// Snapshots above the published one are orphans of a crashed run:
		// no timestamp names them, so replacing them is safe.
		files = append(files, file{Snapshot, p.Snapshot.Signed.Version, b, p.Snapshot.Signed.Version <= published})
	}
	if p.Timestamp != nil {
		b, err := p.Timestamp.ToBytes(true)
		if err != nil {
			return fmt.Errorf("encoding timestamp: %w", err)
		}
		files = append(files, file{Timestamp, p.Timestamp.Signed.Version, b, false})
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		path := filepath.Join(dir, MetadataDir, FileName(f.role, f.version))
		if f.immutable {
			old, err := os.ReadFile(path)
			if err == nil {
				if bytes.Equal(old, f.data) {
					continue
				}
				return fmt.Errorf("%s already exists with other content: published metadata is never rewritten (build version %d instead)", FileName(f.role, f.version), f.version+1)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("reading %s: %w", path, err)
			}
		}
		if err := atomicfile.Write(path, f.data, 0o644); err != nil {
			return err
		}
	}
	if p.Timestamp != nil {
		if err := raiseRecord(dir, p.Timestamp, p.Snapshot); err != nil {
			return err
		}
	}
	if n := len(p.Roots); n > 0 {
		return UpdatePin(dir, p.Roots[n-1])
	}
	return nil
}

// publishedSnapshot returns the snapshot version the current timestamp.json
// names, or 0. It reads without verifying: it only decides which files are
// orphans, never what is trusted.
func publishedSnapshot(dir string) int64 {
	data, err := readMeta(dir, Timestamp, 0)
	if err != nil {
		return 0
	}
	ts, err := metadata.Timestamp().FromBytes(data)
	if err != nil {
		return 0
	}
	if m, ok := ts.Signed.Meta[Snapshot+".json"]; ok {
		return m.Version
	}
	return 0
}

// pinRoot records root as the newest root this side trusts.
func pinRoot(dir string, root *metadata.Metadata[metadata.RootType]) error {
	if err := ensureStateDir(dir); err != nil {
		return err
	}
	b, err := root.ToBytes(true)
	if err != nil {
		return fmt.Errorf("encoding root: %w", err)
	}
	return atomicfile.Write(filepath.Join(dir, StateDir, pinnedRootFile), b, 0o600)
}

func ensureStateDir(dir string) error {
	p := filepath.Join(dir, StateDir)
	if err := os.MkdirAll(p, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", p, err)
	}
	return nil
}

// ErrLocked is returned when another coldharbor process holds the lock.
var ErrLocked = errors.New("repository is locked by another coldharbor process")

// Lock takes the repository's exclusive lock (flock on .coldharbor/lock),
// waiting until ctx is done. Two imports or refreshes never interleave. The
// kernel drops the lock if the process dies.
func Lock(ctx context.Context, dir string) (unlock func(), err error) {
	if err := ensureStateDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, StateDir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%w (%s): %v", ErrLocked, path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Remove deletes a repository's published files, transcript and pinned
// root, leaving anything else in dir alone. Only `ceremony init --force`
// calls it: it discards a root of trust.
func Remove(dir string) error {
	for _, p := range []string{MetadataDir, TargetsDir, TranscriptFile, filepath.Join(StateDir, pinnedRootFile), filepath.Join(StateDir, recordFile), filepath.Join(StateDir, rotationFile)} {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	return nil
}

// noLinksBelow refuses a path under dir that passes through a symbolic
// link: the repository directory may be shared with a web server, and a
// link planted in targets/ must not send a write elsewhere.
func noLinksBelow(dir, path string) error {
	rel, err := filepath.Rel(dir, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s is not inside %s", path, dir)
	}
	cur := dir
	for _, part := range strings.Split(filepath.Dir(rel), string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // created below by us
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir() {
			return fmt.Errorf("%s is a symbolic link or not a directory: refusing to write through it", cur)
		}
	}
	return nil
}
