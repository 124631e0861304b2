// Package safefile opens files that may have been planted by someone else
// (a bundle on removable media, a published metadata/ folder) without
// hanging or reading without end: a FIFO or device is refused before a
// read can block, and reads are bounded.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// NotRegularError is a path that is not a regular file.
type NotRegularError struct {
	Path string
	Mode os.FileMode
}

func (e *NotRegularError) Error() string {
	kind := "not a regular file"
	switch {
	case e.Mode&os.ModeNamedPipe != 0:
		kind = "a FIFO, not a regular file"
	case e.Mode&(os.ModeDevice|os.ModeCharDevice) != 0:
		kind = "a device, not a regular file"
	case e.Mode.IsDir():
		kind = "a directory, not a regular file"
	case e.Mode&os.ModeSocket != 0:
		kind = "a socket, not a regular file"
	}
	return fmt.Sprintf("%s is %s: refusing to read it", e.Path, kind)
}

// TooLargeError is a file over the limit its reader allows.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than the %d bytes allowed", e.Path, e.Limit)
}

// Open opens path for reading only if it is a regular file. The open
// itself cannot block: O_NONBLOCK makes opening a FIFO return at once,
// and the type is checked on the opened descriptor, so a file swapped
// after a check cannot slip through. Symbolic links are followed (the
// target must be a regular file).
func Open(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	return f, fi, nil
}

// ReadFile reads a regular file of at most limit bytes. A sparse file
// with a huge apparent size is refused from its size, before any read.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, fi, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > limit {
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	return data, nil
}

// IsRefused reports whether err is a file refused by this package.
func IsRefused(err error) bool {
	var n *NotRegularError
	var t *TooLargeError
	return errors.As(err, &n) || errors.As(err, &t)
}
