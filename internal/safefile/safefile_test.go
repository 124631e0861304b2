package safefile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestFIFOAndSparseRefusedPromptly: a FIFO is refused without blocking; a
// sparse 4 GiB file is refused from its size, without reading it.
func TestFIFOAndSparseRefusedPromptly(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sparse := filepath.Join(dir, "sparse")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	done := make(chan error, 3)
	go func() { _, err := ReadFile(fifo, 1<<20); done <- err }()
	go func() { _, err := ReadFile(sparse, 5<<20); done <- err }()
	go func() { _, err := ReadFile(dir, 5<<20); done <- err }()
	for range 3 {
		select {
		case err := <-done:
			if !IsRefused(err) {
				t.Fatalf("got %v, want a refusal", err)
			}
			t.Log(err)
		case <-time.After(5 * time.Second):
			t.Fatal("a read blocked")
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ok"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(filepath.Join(dir, "ok"), 5); err != nil || string(b) != "hello" {
		t.Fatalf("regular file: %q %v", b, err)
	}
}
