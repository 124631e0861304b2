package ceremony

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The private folder can be tampered with: a FIFO or a giant planted where
// a pending ceremony keeps its files is refused at once, never read.
func TestPendingRefusesPlantedFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(path string) error
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"sparse giant", func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(4 << 30)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pd := pendingPath(dir)
			if err := os.MkdirAll(pd, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := tc.plant(filepath.Join(pd, "root.json")); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { _, err := loadPending(dir); done <- err }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("a planted root.json was accepted")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("loadPending hung on a planted root.json")
			}
		})
	}
}
