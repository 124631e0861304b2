package bundle

import (
	"archive/tar"
	"fmt"
	"io"
	"strings"
	"time"
)

// A refresh bundle carries a new timestamp (and snapshot, when due) from a
// signer to a site that keeps no online key. Members, in order:
// coldharbor-refresh.json, then root/N.root.json for the root versions it
// carries (optional, ascending), then snapshot.json (optional), then
// timestamp.json.
const (
	RefreshFormat = "coldharbor.refresh.v1"
	RefreshName   = "coldharbor-refresh.json"
	refreshSnap   = "snapshot.json"
	refreshTS     = "timestamp.json"
	// MaxRefresh bounds a whole refresh bundle: go-tuf's limits for a
	// timestamp and a snapshot, and the header.
	MaxRefresh = 3 << 20
)

// Refresh is coldharbor-refresh.json.
type Refresh struct {
	Format  string    `json:"format"`
	Tool    string    `json:"tool"`
	Created time.Time `json:"created"`
	Members []Member  `json:"members"`
}

// RefreshFile is a parsed refresh bundle. Nothing in it is trusted until
// trust.ApplyRefresh has verified it.
type RefreshFile struct {
	Refresh *Refresh
	// Roots are root versions after v1, oldest first: how a rotation of the
	// online keys reaches a site that imports only refresh bundles.
	Roots     []ApprovalRoot
	Timestamp []byte
	Snapshot  []byte // nil when the snapshot was not due
}

// WriteRefresh writes a refresh bundle to w.
func WriteRefresh(w io.Writer, tool string, now time.Time, snapshot, timestamp []byte) error {
	return WriteRefreshRoots(w, tool, now, nil, snapshot, timestamp)
}

// WriteRefreshRoots writes a refresh bundle that carries root versions
// (the newest MaxApprovalRoots of roots).
func WriteRefreshRoots(w io.Writer, tool string, now time.Time, roots []ApprovalRoot, snapshot, timestamp []byte) error {
	r := &Refresh{Format: RefreshFormat, Tool: tool, Created: now.UTC().Truncate(time.Second)}
	var files []File
	if len(roots) > MaxApprovalRoots {
		roots = roots[len(roots)-MaxApprovalRoots:]
	}
	for _, rf := range roots {
		files = append(files, File{fmt.Sprintf("%s%d.root.json", approvalRootPfx, rf.Version), rf.Bytes})
	}
	if snapshot != nil {
		files = append(files, File{refreshSnap, snapshot})
	}
	files = append(files, File{refreshTS, timestamp})
	r.Members = members(files)
	raw, err := jsonIndent(r)
	if err != nil {
		return err
	}
	return writeListed(w, r.Created, RefreshName, raw, r.Members, files)
}

// IsRefresh reports whether the tar at r starts with a refresh header,
// without reading further.
func IsRefresh(r io.Reader) bool {
	h, err := tar.NewReader(r).Next()
	return err == nil && h.Name == RefreshName
}

// ReadRefresh parses a refresh bundle (at most MaxRefresh bytes), checking
// every member against the header's list.
func ReadRefresh(r io.Reader, file string) (*RefreshFile, error) {
	l, raw, err := openListedFile(r, file, refreshKind, MaxRefresh)
	if err != nil {
		return nil, err
	}
	var rf Refresh
	if err := l.decode(raw, &rf, &rf.Format); err != nil {
		return nil, err
	}
	out := &RefreshFile{Refresh: &rf}
	members := rf.Members
	if len(members) > MaxApprovalRoots+2 {
		return nil, &FormatError{File: file, Member: RefreshName, Reason: fmt.Sprintf("lists %d members: at most %d root versions, snapshot.json and timestamp.json", len(members), MaxApprovalRoots)}
	}
	for len(members) > 0 && strings.HasPrefix(members[0].Name, approvalRootPfx) {
		if err := l.nextRoot(members[0], &out.Roots, "not allowed in a refresh bundle (root/N.root.json, then snapshot.json, then timestamp.json)"); err != nil {
			return nil, err
		}
		members = members[1:]
	}
	// Then exactly [timestamp.json] or [snapshot.json, timestamp.json].
	want := []string{refreshTS}
	if len(members) == 2 {
		want = []string{refreshSnap, refreshTS}
	}
	if len(members) != len(want) {
		return nil, &FormatError{File: file, Member: RefreshName, Reason: fmt.Sprintf("lists %d members after the roots: a refresh bundle holds timestamp.json, optionally after snapshot.json", len(members))}
	}
	for i, m := range members {
		if m.Name != want[i] {
			return nil, &FormatError{File: file, Member: m.Name, Reason: "not allowed here (root/N.root.json, then snapshot.json, then timestamp.json)"}
		}
		b, err := l.next(m, MaxRefresh)
		if err != nil {
			return nil, err
		}
		if m.Name == refreshSnap {
			out.Snapshot = b
		} else {
			out.Timestamp = b
		}
	}
	if err := l.end(); err != nil {
		return nil, err
	}
	if out.Timestamp == nil {
		return nil, &FormatError{File: file, Reason: "no timestamp.json"}
	}
	return out, nil
}

// OpenRefresh reads a refresh bundle file, refusing anything but a regular file.
func OpenRefresh(path string) (*RefreshFile, error) {
	f, _, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadRefresh(f, path)
}
