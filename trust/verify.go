package trust

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/internal/safefile"
)

// Verified is a repository as a TUF client accepted it.
type Verified struct {
	Root      *metadata.Metadata[metadata.RootType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Targets   *metadata.Metadata[metadata.TargetsType]
}

// VerifyOptions says what to trust and when "now" is.
type VerifyOptions struct {
	// Anchor is the trusted root to start from. Empty: the pinned root in
	// the private state, or else metadata/1.root.json (trust on first use).
	Anchor []byte
	// Now is the reference time for expiry. Zero: time.Now().
	Now time.Time
}

// Verify loads dir's metadata the way a TUF client does (spec 5.3–5.6):
// the root chain from the anchor, then timestamp, the snapshot it names and
// the targets the snapshot names, with go-tuf checking every signature,
// threshold, version, length, hash and expiry. Any failure is a
// *VerificationError.
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*Verified, error) {
	if opts.Anchor == nil {
		var err error
		if opts.Anchor, err = TrustAnchor(dir); err != nil {
			return nil, err
		}
	}
	return VerifySource(ctx, DirSource(dir), opts)
}

// Source supplies metadata files by role and version (0 for timestamp.json).
// A missing file is an error wrapping fs.ErrNotExist.
type Source interface {
	ReadMeta(role string, version int64) ([]byte, error)
}

// DirSource reads a repository directory's metadata/ folder.
type DirSource string

func (d DirSource) ReadMeta(role string, version int64) ([]byte, error) {
	return readMeta(string(d), role, version)
}

// MemSource is metadata held in memory, keyed by file name (FileName):
// what is about to be published, verified before it is written.
type MemSource map[string][]byte

func (m MemSource) ReadMeta(role string, version int64) ([]byte, error) {
	b, ok := m[FileName(role, version)]
	if !ok {
		return nil, fmt.Errorf("%s: %w", FileName(role, version), fs.ErrNotExist)
	}
	if int64(len(b)) > maxSize(role) {
		return nil, fmt.Errorf("%s is larger than the %d bytes a TUF client accepts", FileName(role, version), maxSize(role))
	}
	return b, nil
}

// VerifySource is Verify over any Source; opts.Anchor is required.
func VerifySource(ctx context.Context, src Source, opts VerifyOptions) (*Verified, error) {
	anchor := opts.Anchor
	if anchor == nil {
		return nil, errors.New("verify: no trusted root given")
	}
	tm, err := walkRoots(ctx, anchor, src)
	if err != nil {
		return nil, err
	}
	if !opts.Now.IsZero() {
		tm.RefTime = opts.Now.UTC()
	}
	data, err := src.ReadMeta(Timestamp, 0)
	if err != nil {
		return nil, missing(Timestamp, err)
	}
	if _, err := tm.UpdateTimestamp(data); err != nil {
		return nil, refusal(Timestamp, versionOf(data), err)
	}
	snapMeta, ok := tm.Timestamp.Signed.Meta[Snapshot+".json"]
	if !ok {
		return nil, &VerificationError{What: Timestamp, Version: tm.Timestamp.Signed.Version, Reason: "names no snapshot.json"}
	}
	snapVer := snapMeta.Version
	if data, err = src.ReadMeta(Snapshot, snapVer); err != nil {
		return nil, missing(Snapshot, err)
	}
	if _, err := tm.UpdateSnapshot(data, false); err != nil {
		return nil, refusal(Snapshot, snapVer, err)
	}
	tmeta, ok := tm.Snapshot.Signed.Meta[Targets+".json"]
	if !ok {
		return nil, &VerificationError{What: Snapshot, Version: snapVer, Reason: "names no targets.json"}
	}
	if data, err = src.ReadMeta(Targets, tmeta.Version); err != nil {
		return nil, missing(Targets, err)
	}
	if _, err := tm.UpdateTargets(data); err != nil {
		return nil, refusal(Targets, tmeta.Version, err)
	}
	return &Verified{Root: tm.Root, Timestamp: tm.Timestamp, Snapshot: tm.Snapshot, Targets: tm.Targets[Targets]}, nil
}

// TrustAnchor returns the root this side trusts to start a chain from: the
// pinned root in the private state, or metadata/1.root.json when nothing is
// pinned (trust on first use).
func TrustAnchor(dir string) ([]byte, error) {
	data, err := readBounded(filepath.Join(dir, StateDir, pinnedRootFile), MaxRootSize)
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	data, err = readMeta(dir, Root, 1)
	if err != nil {
		return nil, fmt.Errorf("no trusted root in %s (%w): %w", dir, ErrNotInitialised, err)
	}
	return data, nil
}

// pinnedRootFile, in StateDir, is the newest root this side has verified.
const pinnedRootFile = "trusted-root.json"

func missing(role string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &VerificationError{What: role, Reason: "metadata missing (not yet signed or published)", Err: err}
	}
	return err
}

// readMeta reads one role file from dir/metadata, bounded by the role's limit.
func readMeta(dir, role string, version int64) ([]byte, error) {
	return readBounded(filepath.Join(dir, MetadataDir, FileName(role, version)), maxSize(role))
}

func readBounded(path string, limit int64) ([]byte, error) {
	// A FIFO or device planted in metadata/ must not hang the job that
	// holds the repository lock; a sparse file is refused from its size.
	data, err := safefile.ReadFile(path, limit)
	var tl *safefile.TooLargeError
	if errors.As(err, &tl) {
		return nil, fmt.Errorf("%s is larger than the %d bytes a TUF client accepts: %w", path, limit, ErrTooLarge)
	}
	return data, err
}

// ErrTooLarge: metadata over the size a TUF client (go-tuf's updater)
// downloads; no client would ever accept it.
var ErrTooLarge = errors.New("over the TUF client's size limit")

// versionOf reads the version of unverified metadata for error messages only.
func versionOf(data []byte) int64 {
	m, err := metadata.Timestamp().FromBytes(data)
	if err != nil {
		return 0
	}
	return m.Signed.Version
}

// VerifyPublication verifies dir as it would be after publishing p, as a
// TUF client starting from the pinned root would see it, at time now; and
// checks each target file against its signed length and hashes.
func VerifyPublication(ctx context.Context, dir string, p Publication, now time.Time) error {
	if err := checkVersions(dir, p); err != nil {
		return err
	}
	if err := CheckPublishable(dir, p); err != nil {
		return err
	}
	anchor, err := TrustAnchor(dir)
	if err != nil {
		return err
	}
	mem := MemSource{}
	for _, r := range p.Roots {
		b, err := r.ToBytes(true)
		if err != nil {
			return err
		}
		mem[FileName(Root, r.Signed.Version)] = b
	}
	put := func(role string, version int64, m interface{ ToBytes(bool) ([]byte, error) }) error {
		b, err := m.ToBytes(true)
		if err != nil {
			return err
		}
		mem[FileName(role, version)] = b
		return nil
	}
	if p.Targets != nil {
		if err := put(Targets, p.Targets.Signed.Version, p.Targets); err != nil {
			return err
		}
	}
	if p.Snapshot != nil {
		if err := put(Snapshot, p.Snapshot.Signed.Version, p.Snapshot); err != nil {
			return err
		}
	}
	if p.Timestamp != nil {
		if err := put(Timestamp, 0, p.Timestamp); err != nil {
			return err
		}
	}
	v, err := VerifySource(ctx, overlay{mem, DirSource(dir)}, VerifyOptions{Anchor: anchor, Now: now})
	if err != nil {
		return err
	}
	for name, data := range p.TargetFiles {
		t, ok := v.Targets.Signed.Targets[name]
		if !ok {
			return &VerificationError{What: Targets, Version: v.Targets.Signed.Version, Reason: fmt.Sprintf("target file %s is not in the signed targets", name)}
		}
		if err := t.VerifyLengthHashes(data); err != nil {
			return &VerificationError{What: Targets, Version: v.Targets.Signed.Version, Reason: fmt.Sprintf("target file %s does not match its signed length and hash", name), Err: err}
		}
	}
	return nil
}

// overlay reads from the first source that has a file.
type overlay []Source

func (o overlay) ReadMeta(role string, version int64) ([]byte, error) {
	var err error
	for _, s := range o {
		var b []byte
		if b, err = s.ReadMeta(role, version); err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

// checkVersions refuses a publication with a version that is not above
// what this side has recorded as published, or that leaves no room for a
// next one (MaxVersion): a TUF client refuses a version that goes down as a
// rollback, and nothing could ever recover the repository.
func checkVersions(dir string, p Publication) error {
	r, err := readRecord(dir)
	if err != nil {
		return err
	}
	check := func(role string, v, recorded int64) error {
		switch {
		case v < 1 || v > MaxVersion:
			return &VerificationError{What: role, Version: v, Reason: fmt.Sprintf("version %d is outside 1..%d (it would overflow): refused", v, MaxVersion)}
		case v <= recorded:
			return &VerificationError{What: role, Version: v, Reason: fmt.Sprintf("not above the published v%d: a version never goes down", recorded)}
		}
		return nil
	}
	if p.Timestamp != nil {
		if err := check(Timestamp, p.Timestamp.Signed.Version, r.Timestamp); err != nil {
			return err
		}
	}
	if p.Snapshot != nil {
		if err := check(Snapshot, p.Snapshot.Signed.Version, r.Snapshot); err != nil {
			return err
		}
	}
	if p.Targets != nil {
		if err := check(Targets, p.Targets.Signed.Version, r.Targets); err != nil {
			return err
		}
	}
	for _, root := range p.Roots {
		if err := check(Root, root.Signed.Version, 0); err != nil {
			return err
		}
	}
	return nil
}
