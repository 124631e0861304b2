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
	"github.com/coldharbor/coldharbor/internal/safefile"
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
	return TargetPathHex(dir, name, hex.EncodeToString(sum[:]))
}

// TargetPathHex is TargetPath for content whose sha256 is sumHex.
func TargetPathHex(dir, name, sumHex string) string {
	d, base := path.Split(name)
	return filepath.Join(dir, TargetsDir, filepath.FromSlash(d), sumHex+"."+base)
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
	if err := CheckPublishable(dir, p); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, MetadataDir), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", MetadataDir, err)
	}
	if err := writeTargetFiles(ctx, dir, p.TargetFiles); err != nil {
		return err
	}
	if len(p.Roots) > 0 {
		if err := noteOnline(dir, p.Roots[0].Signed.Version); err != nil {
			return fmt.Errorf("noting the snapshot and timestamp before a root rotation: %w", err)
		}
	}
	files, err := metaFiles(dir, p)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.write(dir); err != nil {
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

// writeTargetFiles writes target contents under their consistent-snapshot
// names; one already there is the same bytes (its name holds its hash).
func writeTargetFiles(ctx context.Context, dir string, files map[string][]byte) error {
	for name, data := range files {
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
		if _, err := os.Lstat(tp); err == nil {
			continue // checked by CheckPublishable: the same bytes
		}
		if err := os.MkdirAll(filepath.Dir(tp), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", filepath.Dir(tp), err)
		}
		if err := atomicfile.Write(tp, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// metaFile is one metadata file to publish.
type metaFile struct {
	role      string
	version   int64
	data      []byte
	immutable bool // never replaced by other bytes
}

// metaFiles encodes p's metadata in publication order: roots, targets,
// snapshot, and timestamp.json last.
func metaFiles(dir string, p Publication) ([]metaFile, error) {
	published := publishedSnapshot(dir)
	if r, err := readRecord(dir); err == nil {
		published = max(published, r.Snapshot)
	}
	var files []metaFile
	add := func(role string, version int64, m interface{ ToBytes(bool) ([]byte, error) }, immutable bool) error {
		b, err := m.ToBytes(true)
		if err != nil {
			return fmt.Errorf("encoding %s v%d: %w", role, version, err)
		}
		files = append(files, metaFile{role, version, b, immutable})
		return nil
	}
	for _, r := range p.Roots {
		if err := add(Root, r.Signed.Version, r, true); err != nil {
			return nil, err
		}
	}
	if p.Targets != nil {
		if err := add(Targets, p.Targets.Signed.Version, p.Targets, true); err != nil {
			return nil, err
		}
	}
	// Snapshots above the published one are orphans of a crashed run: no
	// timestamp names them, so replacing them is safe.
	if p.Snapshot != nil {
		if err := add(Snapshot, p.Snapshot.Signed.Version, p.Snapshot, p.Snapshot.Signed.Version <= published); err != nil {
			return nil, err
		}
	}
	if p.Timestamp != nil {
		if err := add(Timestamp, p.Timestamp.Signed.Version, p.Timestamp, false); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// write puts f in place atomically, refusing to rewrite an immutable file
// with other bytes.
func (f metaFile) write(dir string) error {
	path := filepath.Join(dir, MetadataDir, FileName(f.role, f.version))
	if f.immutable {
		same, err := existingSame(path, f.data, maxSize(f.role))
		if err != nil {
			return err
		}
		if same {
			return nil
		}
	}
	return atomicfile.Write(path, f.data, 0o644)
}

// CheckPublishable checks everything in dir that Publish will touch,
// before anything is pushed or written, so that a planted file cannot stop
// a publication half way (images tagged, TUF not published): each file the
// publication writes is absent, or a regular file within its role's size
// limit (a published version must hold the same bytes); no symbolic link
// leads into targets/; target names are valid. It reads no file without a
// bound, and opens none that could block (FIFOs, devices).
func CheckPublishable(dir string, p Publication) error {
	if err := checkDirNotLink(dir, MetadataDir); err != nil {
		return err
	}
	if err := checkDirNotLink(dir, TargetsDir); err != nil {
		return err
	}
	for name, data := range p.TargetFiles {
		if err := CheckTargetName(name); err != nil {
			return err
		}
		tp := TargetPath(dir, name, data)
		if err := noLinksBelow(dir, tp); err != nil {
			return err
		}
		if _, err := existingSame(tp, data, int64(len(data))); err != nil {
			return err
		}
	}
	files, err := metaFiles(dir, p)
	if err != nil {
		return err
	}
	for _, f := range files {
		_, err := existingSame(filepath.Join(dir, MetadataDir, FileName(f.role, f.version)), f.data, maxSize(f.role))
		if err != nil && (f.immutable || !isNotSame(err)) {
			return err
		}
	}
	return nil
}

// notSameError: a file that exists with other content than a publication's.
type notSameError struct{ path string }

func (e *notSameError) Error() string {
	return fmt.Sprintf("%s already exists with other content: published metadata is never rewritten (remove it if it was planted, or build the next version)", e.path)
}

func isNotSame(err error) bool {
	var n *notSameError
	return errors.As(err, &n)
}

// existingSame reports whether path holds exactly data (false, nil when it
// does not exist). Anything else in the way — a directory, a link, a FIFO,
// a file over limit, other bytes — is an error naming the path.
func existingSame(path string, data []byte, limit int64) (bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("%s is in the way: a %v, not a regular file (remove it; nothing was pushed)", path, fi.Mode().Type())
	}
	if fi.Size() > limit {
		return false, fmt.Errorf("%s is in the way: %d bytes, over the %d a TUF client accepts (remove it; nothing was pushed)", path, fi.Size(), limit)
	}
	old, err := safefile.ReadFile(path, limit)
	if err != nil {
		return false, err
	}
	if !bytes.Equal(old, data) {
		return false, &notSameError{path: path}
	}
	return true, nil
}

// checkDirNotLink refuses dir/sub when it exists as anything but a real
// directory.
func checkDirNotLink(dir, sub string) error {
	fi, err := os.Lstat(filepath.Join(dir, sub))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is a symbolic link or not a directory: refusing to publish through it", filepath.Join(dir, sub))
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
