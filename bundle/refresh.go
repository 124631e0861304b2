package bundle

import (
	"archive/tar"
	"bytes"
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
	type m struct {
		name string
		data []byte
	}
	var ms []m
	if snapshot != nil {
		ms = append(ms, m{refreshSnap, snapshot})
	}
	ms = append(ms, m{refreshTS, timestamp})
	for _, x := range ms {
		r.Members = append(r.Members, member(x.name, x.data))
	}
	raw, err := jsonIndent(r)
	if err != nil {
		return err
	}
	tw := newTarWriter(w, r.Created)
	if err := tw.bytes(RefreshName, raw); err != nil {
		return err
	}
	for _, x := range ms {
		if err := tw.bytes(x.name, x.data); err != nil {
			return err
		}
	}
	return tw.close()
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
	data, err := io.ReadAll(io.LimitReader(r, MaxRefresh+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(data) > MaxRefresh {
		return nil, &FormatError{File: file, Reason: fmt.Sprintf("over the %d-byte limit of a refresh bundle", MaxRefresh)}
	}
	tr := tar.NewReader(bytes.NewReader(data))
	h, err := nextMember(tr, file)
	if err == io.EOF {
		return nil, &FormatError{File: file, Reason: "empty tar: not a refresh bundle"}
	}
	if err != nil {
		return nil, err
	}
	if h.Name != RefreshName {
		return nil, &FormatError{File: file, Member: h.Name, Reason: "first member must be " + RefreshName}
	}
	raw, err := io.ReadAll(io.LimitReader(tr, MaxRefresh))
	if err != nil {
		return nil, &FormatError{File: file, Member: h.Name, Reason: err.Error()}
	}
	var rf Refresh
	if err := decodeStrict(raw, &rf); err != nil {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("not valid JSON for %s: %v", RefreshFormat, err)}
	}
	if rf.Format != RefreshFormat {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("format %q, this coldharbor reads %q", rf.Format, RefreshFormat)}
	}
	out := &RefreshFile{Refresh: &rf}
	// Exactly [timestamp.json] or [snapshot.json, timestamp.json].
	want := []string{refreshTS}
	if len(rf.Members) == 2 {
		want = []string{refreshSnap, refreshTS}
	}
	if len(rf.Members) != len(want) {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("lists %d members: a refresh bundle holds timestamp.json, optionally after snapshot.json", len(rf.Members))}
	}
	for i, m := range rf.Members {
		if m.Name != want[i] {
			return nil, &FormatError{File: file, Member: m.Name, Reason: "not allowed here (snapshot.json, then timestamp.json)"}
		}
		h, err := nextListed(tr, m.Name, file, "bundle", "header")
		if err != nil {
			return nil, err
		}
		b, err := readMember(tr, h, m, MaxRefresh, file)
		if err != nil {
			return nil, err
		}
		if m.Name == refreshSnap {
			out.Snapshot = b
		} else {
			out.Timestamp = b
		}
	}
	if err := noMoreMembers(tr, file); err != nil {
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
