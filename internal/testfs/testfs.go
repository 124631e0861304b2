// Package testfs holds the file-tree helpers every package's tests share: a
// copy of a directory (a repository carried to another machine) and a hash
// of a tree (to prove that a refused operation changed nothing). Tests only.
package testfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// CopyDir copies the directories and regular files under from to to, each
// with its permission bits (so a private 0700 directory stays private), as
// an operator carries a repository with `cp -a`. Symbolic links and other
// special files are not copied.
func CopyDir(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return err
			}
			return os.Chmod(dst, info.Mode().Perm())
		case !info.Mode().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("testfs.CopyDir %s → %s: %v", from, to, err)
	}
}

// TreeHash hashes the name and content of every regular file under dir,
// except files named in skip (such as a lock file whose presence varies), in
// lexical order: equal hashes mean an identical tree.
func TreeHash(t testing.TB, dir string, skip ...string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		for _, s := range skip {
			if d.Name() == s {
				return nil
			}
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h.Write([]byte(rel + "\x00"))
		// Hostile-input tests plant FIFOs, links and sparse giants: those
		// are hashed by type and size, never opened or read whole.
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() || info.Size() > 64<<20 {
			fmt.Fprintf(h, "%v %d", info.Mode().Type(), info.Size())
			h.Write([]byte{0})
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Write(b)
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		t.Fatalf("testfs.TreeHash %s: %v", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
