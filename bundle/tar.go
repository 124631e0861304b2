package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/coldharbor/coldharbor/internal/safefile"
)

// tarWriter writes members with fixed metadata (mode 0644, uid/gid 0, one
// timestamp), so the same content makes the same bytes.
type tarWriter struct {
	tw    *tar.Writer
	mtime time.Time
}

func newTarWriter(w io.Writer, mtime time.Time) *tarWriter {
	return &tarWriter{tw: tar.NewWriter(w), mtime: mtime.UTC().Truncate(time.Second)}
}

func (t *tarWriter) header(name string, size int64) error {
	return t.tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
		ModTime: t.mtime, Format: tar.FormatPAX,
	})
}

func (t *tarWriter) bytes(name string, data []byte) error {
	if err := t.header(name, int64(len(data))); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if _, err := t.tw.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// stream copies exactly size bytes from r into member name.
func (t *tarWriter) stream(name string, size int64, r io.Reader) error {
	if err := t.header(name, size); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	n, err := io.Copy(t.tw, r)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("writing %s: got %d bytes, expected %d", name, n, size)
	}
	return nil
}

func (t *tarWriter) close() error { return t.tw.Close() }

// MemberOf is the listing entry of a member holding data.
func MemberOf(name string, data []byte) Member {
	s := sha256.Sum256(data)
	return Member{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(s[:])}
}

// nextMember reads the next tar header and refuses anything but a regular
// file: links, devices, directories and sparse files have no place in a
// bundle and are how path tricks get in.
func nextMember(tr *tar.Reader, file string) (*tar.Header, error) {
	h, err := tr.Next()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, &FormatError{File: file, Reason: fmt.Sprintf("not a valid tar (truncated or damaged): %v", err)}
	}
	if h.Typeflag != tar.TypeReg {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("is a %s, not a regular file", typeName(h.Typeflag))}
	}
	if h.Size < 0 {
		return nil, &FormatError{File: file, Member: h.Name, Reason: "negative size"}
	}
	// archive/tar presents a PAX (GNU 1.0) sparse file as a regular one,
	// with holes: its data is not where the header says, so refuse it.
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return nil, &FormatError{File: file, Member: h.Name, Reason: "is a sparse file, not a regular file"}
		}
	}
	return h, nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeDir:
		return "directory"
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return "device or fifo"
	}
	return fmt.Sprintf("member of type %q", t)
}

// readMember reads a whole member of at most limit bytes and checks it
// against want (its index entry).
func readMember(tr *tar.Reader, h *tar.Header, want Member, limit int64, file string) ([]byte, error) {
	if h.Size != want.Size {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("size %d, the index says %d", h.Size, want.Size)}
	}
	if h.Size > limit {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("%d bytes is over the limit of %d", h.Size, limit)}
	}
	data := make([]byte, h.Size)
	if _, err := io.ReadFull(tr, data); err != nil {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("truncated: %v", err)}
	}
	s := sha256.Sum256(data)
	if got := hex.EncodeToString(s[:]); got != want.SHA256 {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("sha256 %s, the index says %s", got, want.SHA256)}
	}
	return data, nil
}

// openRegular opens path refusing anything that is not a regular file
// (ggcr's layout reader does the same): a bundle on removable media is not
// trusted to be what its name says.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, &FormatError{File: path, Reason: "not a regular file"}
	}
	// Opened without blocking and checked again on the descriptor: a FIFO
	// swapped in after the Lstat must not hang the reader.
	f, _, err := safefile.Open(path)
	if err != nil {
		if safefile.IsRefused(err) {
			return nil, nil, &FormatError{File: path, Reason: "not a regular file"}
		}
		return nil, nil, err
	}
	fi2, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !os.SameFile(fi, fi2) {
		f.Close()
		return nil, nil, &FormatError{File: path, Reason: "changed while being opened"}
	}
	return f, fi2, nil
}

// OpenFile opens a bundle, approval or refresh bundle for reading, refusing
// anything that is not a regular file (a FIFO, a device, a link) with a
// *FormatError, without blocking.
func OpenFile(path string) (*os.File, error) {
	f, _, err := openRegular(path)
	return f, err
}

// IsFormatError reports whether err is a malformed or hostile input.
func IsFormatError(err error) bool {
	var f *FormatError
	return errors.As(err, &f)
}
