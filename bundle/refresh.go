package bundle

import (
	"archive/tar"
	"fmt"
	"io"
	"time"
)

// A refresh bundle carries a new timestamp (and snapshot, when due) from a
// signer to a site that keeps no online key. Members, in order:
// coldharbor-refresh.json, then snapshot.json (optional), then timestamp.json.
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
	Refresh   *Refresh
	Timestamp []byte
	Snapshot  []byte // nil when the snapshot was not due
}

// WriteRefresh writes a refresh bundle to w.
func WriteRefresh(w io.Writer, tool string, now time.Time, snapshot, timestamp []byte) error {
	r := &Refresh{Format: RefreshFormat, Tool: tool, Created: now.UTC().Truncate(time.Second)}
	var files []File
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
	if err := decodeStrict(raw, &rf); err != nil {
		return nil, &FormatError{File: file, Member: RefreshName, Reason: fmt.Sprintf("not valid JSON for %s: %v", RefreshFormat, err)}
	}
	if rf.Format != RefreshFormat {
		return nil, &FormatError{File: file, Member: RefreshName, Reason: fmt.Sprintf("format %q, this coldharbor reads %q", rf.Format, RefreshFormat)}
	}
	out := &RefreshFile{Refresh: &rf}
	// Exactly [timestamp.json] or [snapshot.json, timestamp.json].
	want := []string{refreshTS}
	if len(rf.Members) == 2 {
		want = []string{refreshSnap, refreshTS}
	}
	if len(rf.Members) != len(want) {
		return nil, &FormatError{File: file, Member: RefreshName, Reason: fmt.Sprintf("lists %d members: a refresh bundle holds timestamp.json, optionally after snapshot.json", len(rf.Members))}
	}
	for i, m := range rf.Members {
		if m.Name != want[i] {
			return nil, &FormatError{File: file, Member: m.Name, Reason: "not allowed here (snapshot.json, then timestamp.json)"}
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
