package trust

import (
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// The next version of a role is built here and only here: the ceremony,
// an import and a refresh all publish versions that follow on from what is
// published, and a client refuses any that does not (TUF spec 5.4–5.6).

// NextTargets returns an unsigned copy of cur with version+1, the same
// targets and delegations, expiring expires after now.
func NextTargets(cur *metadata.Metadata[metadata.TargetsType], now time.Time, expires time.Duration) *metadata.Metadata[metadata.TargetsType] {
	next := metadata.Targets(ExpiresAt(now, expires))
	next.Signed.Version = cur.Signed.Version + 1
	for name, tf := range cur.Signed.Targets {
		c := *tf
		next.Signed.Targets[name] = &c
	}
	next.Signed.Delegations = cur.Signed.Delegations
	return next
}

// NextSnapshot returns an unsigned snapshot that follows prev (nil: the
// first, version 1) and names targets version targetsVersion.
func NextSnapshot(prev *metadata.Metadata[metadata.SnapshotType], targetsVersion int64, expires time.Time) *metadata.Metadata[metadata.SnapshotType] {
	next := metadata.Snapshot(expires)
	next.Signed.Version = 1
	if prev != nil {
		next.Signed.Version = prev.Signed.Version + 1
	}
	next.Signed.Meta[Targets+".json"] = metadata.MetaFile(targetsVersion)
	return next
}

// NextTimestamp returns an unsigned timestamp that follows prev (nil: the
// first, version 1) and names snapshot version snapshotVersion.
func NextTimestamp(prev *metadata.Metadata[metadata.TimestampType], snapshotVersion int64, expires time.Time) *metadata.Metadata[metadata.TimestampType] {
	next := metadata.Timestamp(expires)
	next.Signed.Version = 1
	if prev != nil {
		next.Signed.Version = prev.Signed.Version + 1
	}
	next.Signed.Meta[Snapshot+".json"] = metadata.MetaFile(snapshotVersion)
	return next
}
