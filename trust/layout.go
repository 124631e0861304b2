package trust

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Role names (TUF spec 1.0, section 2.1).
const (
	Root      = metadata.ROOT
	Targets   = metadata.TARGETS
	Snapshot  = metadata.SNAPSHOT
	Timestamp = metadata.TIMESTAMP
)

// Roles lists the top-level roles in the order a client loads them.
func Roles() []string { return []string{Root, Timestamp, Snapshot, Targets} }

// Directory names inside a repository directory.
const (
	MetadataDir    = "metadata"
	TargetsDir     = "targets"
	TranscriptFile = "transcript.jsonl"
	// StateDir holds private, unpublished state; created 0700 so a web
	// server serving the repository as another user cannot read it.
	StateDir = ".coldharbor"
)

// Size limits for reading metadata: the go-tuf updater's defaults, so we
// never accept locally what a client would refuse to download.
const (
	MaxRootSize      = 512000
	MaxTimestampSize = 16384
	MaxSnapshotSize  = 2000000
	MaxTargetsSize   = 5000000
)

func maxSize(role string) int64 {
	switch role {
	case Root:
		return MaxRootSize
	case Timestamp:
		return MaxTimestampSize
	case Snapshot:
		return MaxSnapshotSize
	}
	return MaxTargetsSize
}

// FileName is a role's file name under consistent snapshots (TUF spec
// 5.5.x): timestamp.json is unversioned, every other role is VERSION.ROLE.json.
func FileName(role string, version int64) string {
	if role == Timestamp {
		return "timestamp.json"
	}
	return fmt.Sprintf("%d.%s.json", version, role)
}

// Expiry is how long each role's metadata stays valid once signed.
type Expiry map[string]time.Duration

// DefaultExpiry is docs/design.md's table: root 365 days, targets 90, snapshot 7,
// timestamp 1.
func DefaultExpiry() Expiry {
	return Expiry{
		Root:      365 * 24 * time.Hour,
		Targets:   90 * 24 * time.Hour,
		Snapshot:  7 * 24 * time.Hour,
		Timestamp: 24 * time.Hour,
	}
}

// DefaultWarn is how long before expiry status and refresh warn: 30 days for
// the offline roles (a person must renew them), one day for snapshot and six
// hours for timestamp (refresh renews them unattended).
func DefaultWarn() Expiry {
	return Expiry{
		Root:      30 * 24 * time.Hour,
		Targets:   30 * 24 * time.Hour,
		Snapshot:  24 * time.Hour,
		Timestamp: 6 * time.Hour,
	}
}

// ExpiresAt returns now+d in UTC, whole seconds: TUF's date format has no
// fractions and some clients (python-tuf) refuse them.
func ExpiresAt(now time.Time, d time.Duration) time.Time {
	return now.UTC().Truncate(time.Second).Add(d)
}

// Exists reports whether dir already holds a repository.
func Exists(dir string) bool {
	entries, err := os.ReadDir(filepath.Join(dir, MetadataDir))
	return err == nil && len(entries) > 0
}

// MaxVersion is the largest metadata version published or accepted here:
// 2^53-1, the largest integer every TUF client represents exactly
// (tuf-js reads versions as JavaScript numbers), and far from the 2^63-1
// after which a next version would wrap to a negative one that every
// client refuses as a rollback, with no way back (issue 11).
const MaxVersion int64 = 1<<53 - 1
