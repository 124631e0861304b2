package bundle

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
)

// The three formats — a bundle's head, an approval and a refresh bundle —
// are one shape of tar (docs/bundle-format.md): a first member of JSON that
// lists the members after it by name, size and sha256, then those members
// in that order. listedReader and listedWriter are that shape, once.

// listedKind names one format for messages.
type listedKind struct {
	what   string // what the file is: "coldharbor approval"
	short  string // what ends early: "approval"
	first  string // the listing member's name
	lister string // what lists the members: "index", "header"
	hint   string // added when the first member is another one
	noun   string // for the size limit: "an approval"
	format string // the listing's "format" value
}

var (
	headKind     = listedKind{what: "coldharbor bundle", short: "bundle", first: IndexName, lister: "index", hint: " (is this a coldharbor bundle?)"}
	approvalKind = listedKind{what: "coldharbor approval", short: "approval", first: ApprovalName, lister: "approval", hint: " (is this an approval? the bundle goes first)", noun: "an approval", format: ApprovalFormat}
	refreshKind  = listedKind{what: "refresh bundle", short: "bundle", first: RefreshName, lister: "header", noun: "a refresh bundle", format: RefreshFormat}
)

// listedReader reads the members a listing names, in order, each checked
// against its size and sha256.
type listedReader struct {
	tr   *tar.Reader
	file string
	kind listedKind
}

// openListed reads the listing member (at most limit bytes) from r.
func openListed(r io.Reader, file string, kind listedKind, limit int64) (*listedReader, []byte, error) {
	l := &listedReader{tr: tar.NewReader(r), file: file, kind: kind}
	h, err := nextMember(l.tr, file)
	if err == io.EOF {
		return nil, nil, &FormatError{File: file, Reason: "empty tar: not a " + kind.what}
	}
	if err != nil {
		return nil, nil, err
	}
	if h.Name != kind.first {
		return nil, nil, &FormatError{File: file, Member: h.Name, Reason: "first member must be " + kind.first + kind.hint}
	}
	if h.Size > limit {
		return nil, nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("%d bytes is over the limit of %d", h.Size, limit)}
	}
	raw := make([]byte, h.Size)
	if _, err := io.ReadFull(l.tr, raw); err != nil {
		return nil, nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("truncated: %v", err)}
	}
	return l, raw, nil
}

// openListedFile reads a whole small listed tar (an approval, a refresh
// bundle) of at most limit bytes into memory, then opens it.
func openListedFile(r io.Reader, file string, kind listedKind, limit int64) (*listedReader, []byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if int64(len(data)) > limit {
		return nil, nil, &FormatError{File: file, Reason: fmt.Sprintf("over the %d-byte limit of %s", limit, kind.noun)}
	}
	return openListed(bytes.NewReader(data), file, kind, limit)
}

// decode decodes the listing strictly into v and checks its format field.
func (l *listedReader) decode(raw []byte, v any, format *string) error {
	if err := decodeStrict(raw, v); err != nil {
		return &FormatError{File: l.file, Member: l.kind.first, Reason: fmt.Sprintf("not valid JSON for %s: %v", l.kind.format, err)}
	}
	if *format != l.kind.format {
		return &FormatError{File: l.file, Member: l.kind.first, Reason: fmt.Sprintf("format %q, this coldharbor reads %q", *format, l.kind.format)}
	}
	return nil
}

// next reads the member the listing names next, m, of at most limit bytes.
func (l *listedReader) next(m Member, limit int64) ([]byte, error) {
	h, err := nextMember(l.tr, l.file)
	if err == io.EOF {
		return nil, &FormatError{File: l.file, Member: m.Name, Reason: "missing: the " + l.kind.short + " ends early"}
	}
	if err != nil {
		return nil, err
	}
	if h.Name != m.Name {
		return nil, &FormatError{File: l.file, Member: h.Name, Reason: fmt.Sprintf("out of order: the %s lists %q here", l.kind.lister, m.Name)}
	}
	return readMember(l.tr, h, m, limit, l.file)
}

// nextRoot reads a listed root/N.root.json onto roots: N must follow the
// root before it (approvals and refresh bundles carry root chains).
func (l *listedReader) nextRoot(m Member, roots *[]ApprovalRoot, notAllowed string) error {
	name, ok := strings.CutPrefix(m.Name, approvalRootPfx)
	if !ok || !rootRE.MatchString(name) {
		return &FormatError{File: l.file, Member: m.Name, Reason: notAllowed}
	}
	var v int64
	fmt.Sscanf(name, "%d", &v)
	if n := len(*roots); n > 0 && v != (*roots)[n-1].Version+1 {
		return &FormatError{File: l.file, Member: m.Name, Reason: "root versions must follow each other"}
	}
	b, err := l.next(m, MaxHeadMember)
	if err != nil {
		return err
	}
	*roots = append(*roots, ApprovalRoot{Version: v, Bytes: b})
	return nil
}

// end checks the tar ends after the listed members.
func (l *listedReader) end() error {
	h, err := nextMember(l.tr, l.file)
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		return err
	}
	return &FormatError{File: l.file, Member: h.Name, Reason: "members after the listed ones"}
}

// File is one member's name and bytes.
type File struct {
	Name string
	Data []byte
}

// listedWriter writes a listing member and then exactly the members it
// lists, in order: a writer cannot produce a file its reader refuses for
// order or size.
type listedWriter struct {
	tw   *tarWriter
	rest []Member
}

// newListedWriter writes first (the listing, already encoded) and expects
// the members listed.
func newListedWriter(w io.Writer, mtime time.Time, first string, listing []byte, listed []Member) (*listedWriter, error) {
	l := &listedWriter{tw: newTarWriter(w, mtime), rest: listed}
	if err := l.tw.bytes(first, listing); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *listedWriter) expect(name string, size int64) error {
	if len(l.rest) == 0 || l.rest[0].Name != name || l.rest[0].Size != size {
		return fmt.Errorf("internal error: writing %s (%d bytes), not the member listed next", name, size)
	}
	l.rest = l.rest[1:]
	return nil
}

func (l *listedWriter) write(f File) error {
	if err := l.expect(f.Name, int64(len(f.Data))); err != nil {
		return err
	}
	return l.tw.bytes(f.Name, f.Data)
}

func (l *listedWriter) stream(name string, size int64, r io.Reader) error {
	if err := l.expect(name, size); err != nil {
		return err
	}
	return l.tw.stream(name, size, r)
}

func (l *listedWriter) close() error {
	if len(l.rest) > 0 {
		return fmt.Errorf("internal error: %s is listed and was not written", l.rest[0].Name)
	}
	return l.tw.close()
}

// writeListed writes a whole small listed tar: listing, then files.
func writeListed(w io.Writer, mtime time.Time, first string, listing []byte, listed []Member, files []File) error {
	l, err := newListedWriter(w, mtime, first, listing, listed)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := l.write(f); err != nil {
			return err
		}
	}
	return l.close()
}

// members lists files as a listing records them.
func members(files []File) []Member {
	out := make([]Member, len(files))
	for i, f := range files {
		out[i] = MemberOf(f.Name, f.Data)
	}
	return out
}
