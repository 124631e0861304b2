package trust

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// State of one role, from best to worst.
const (
	StateOK       = "ok"
	StateExpiring = "expiring" // within its warning window
	StateExpired  = "expired"
	StateMissing  = "missing" // not yet signed or published
	StateInvalid  = "invalid" // signatures do not meet the threshold
)

// RoleStatus is what `coldharbor status` reports for one role.
type RoleStatus struct {
	Role       string    `json:"role"`
	Version    int64     `json:"version,omitempty"`
	Expires    time.Time `json:"expires,omitzero"`
	Threshold  int       `json:"threshold"`
	KeyIDs     []string  `json:"keyids"`
	SignedBy   []string  `json:"signed_by"`
	State      string    `json:"state"`
	WarnWithin string    `json:"warn_within"`
	Problem    string    `json:"problem,omitempty"`
}

// CheckRoles refuses a status report in which any role's signatures do not
// verify (StateInvalid), naming each; expiry is not a refusal.
func CheckRoles(roles []RoleStatus) error {
	var invalid []string
	for _, r := range roles {
		if r.State == StateInvalid {
			invalid = append(invalid, fmt.Sprintf("%s v%d: %s", r.Role, r.Version, r.Problem))
		}
	}
	if len(invalid) > 0 {
		return &VerificationError{What: WhatRepository, Reason: strings.Join(invalid, "; ")}
	}
	return nil
}

// NeedsAttention reports whether the role is not plainly fine.
func (s RoleStatus) NeedsAttention() bool { return s.State != StateOK }

// Status reports every top-level role of dir at time now: version, expiry,
// threshold, key IDs, which keys signed, and a state. Unlike Verify it goes
// on past a failure so that every role is reported; signatures are checked
// by go-tuf against the newest root the chain from the anchor reaches.
// It fails only when the root chain itself does not verify.
func Status(ctx context.Context, dir string, now time.Time, warn Expiry) ([]RoleStatus, error) {
	anchor, err := TrustAnchor(dir)
	if err != nil {
		return nil, err
	}
	tm, err := walkRoots(ctx, anchor, DirSource(dir))
	if err != nil {
		return nil, err
	}
	root := tm.Root
	out := []RoleStatus{roleStatus(root, Root, root.Signatures, root.Signed.Version, root.Signed.Expires, nil, now, warn)}

	var snapVer, targetsVer int64
	ts, err := loadRole[metadata.TimestampType](dir, Timestamp, 0)
	out = append(out, statusOf(root, Timestamp, ts, err, now, warn))
	if ts != nil {
		if m, ok := ts.Signed.Meta[Snapshot+".json"]; ok {
			snapVer = m.Version
		}
	}
	if snapVer == 0 {
		snapVer = highestVersion(dir, Snapshot)
	}
	sn, err := loadRole[metadata.SnapshotType](dir, Snapshot, snapVer)
	out = append(out, statusOf(root, Snapshot, sn, err, now, warn))
	if sn != nil {
		if m, ok := sn.Signed.Meta[Targets+".json"]; ok {
			targetsVer = m.Version
		}
	}
	if targetsVer == 0 {
		targetsVer = highestVersion(dir, Targets)
	}
	tg, err := loadRole[metadata.TargetsType](dir, Targets, targetsVer)
	out = append(out, statusOf(root, Targets, tg, err, now, warn))
	// Report in the order people think of them: root, targets, snapshot, timestamp.
	order := map[string]int{Root: 0, Targets: 1, Snapshot: 2, Timestamp: 3}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i].Role] < order[out[j].Role] })
	return out, ctx.Err()
}

type signedRole interface {
	metadata.TimestampType | metadata.SnapshotType | metadata.TargetsType
}

func loadRole[T signedRole](dir, role string, version int64) (*metadata.Metadata[T], error) {
	if role != Timestamp && version == 0 {
		return nil, fs.ErrNotExist
	}
	data, err := readMeta(dir, role, version)
	if err != nil {
		return nil, err
	}
	var m metadata.Metadata[T]
	if _, err := m.FromBytes(data); err != nil {
		return nil, fmt.Errorf("%s: %w", FileName(role, version), err)
	}
	return &m, nil
}

func statusOf[T signedRole](root *metadata.Metadata[metadata.RootType], role string, m *metadata.Metadata[T], loadErr error, now time.Time, warn Expiry) RoleStatus {
	if m == nil {
		s := roleStatus(root, role, nil, 0, time.Time{}, nil, now, warn)
		s.State, s.Problem = StateMissing, "not yet signed or published"
		if !errors.Is(loadErr, fs.ErrNotExist) {
			s.State, s.Problem = StateInvalid, loadErr.Error()
		}
		return s
	}
	var version int64
	var expires time.Time
	switch s := any(&m.Signed).(type) {
	case *metadata.TimestampType:
		version, expires = s.Version, s.Expires
	case *metadata.SnapshotType:
		version, expires = s.Version, s.Expires
	case *metadata.TargetsType:
		version, expires = s.Version, s.Expires
	}
	return roleStatus(root, role, m.Signatures, version, expires, root.VerifyDelegate(role, m), now, warn)
}

func roleStatus(root *metadata.Metadata[metadata.RootType], role string, sigs []metadata.Signature, version int64, expires time.Time, verifyErr error, now time.Time, warn Expiry) RoleStatus {
	s := RoleStatus{Role: role, Version: version, Expires: expires, KeyIDs: []string{}, SignedBy: []string{}, State: StateOK}
	if r, ok := root.Signed.Roles[role]; ok {
		s.Threshold = r.Threshold
		s.KeyIDs = append(s.KeyIDs, r.KeyIDs...)
	}
	for _, sig := range sigs {
		s.SignedBy = append(s.SignedBy, sig.KeyID)
	}
	w := warn[role]
	s.WarnWithin = FormatDuration(w)
	switch {
	case verifyErr != nil:
		s.State, s.Problem = StateInvalid, verifyErr.Error()
	case !expires.IsZero() && !now.Before(expires):
		s.State = StateExpired
	case !expires.IsZero() && expires.Sub(now) <= w:
		s.State = StateExpiring
	}
	return s
}

// highestVersion finds the newest N.role.json by probing upwards for the
// files (without reading them: targets files may be megabytes each); used
// when no signed metadata names the version.
func highestVersion(dir, role string) int64 {
	var v int64
	for {
		if _, err := os.Stat(filepath.Join(dir, MetadataDir, FileName(role, v+1))); err != nil {
			return v
		}
		v++
	}
}

// HighestVersion is the newest version of role that has a file in dir,
// whether or not it reads or verifies: a new version must be numbered
// above it, since published metadata is never rewritten.
func HighestVersion(dir, role string) int64 { return highestVersion(dir, role) }
