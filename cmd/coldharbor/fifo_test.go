package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestFIFOBundleRefused (issue 11, finding 3): sign and inspect given a
// FIFO as the bundle refuse it at once (exit 3) instead of hanging.
func TestFIFOBundleRefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "bundle.tar")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Release a reader stuck in open, so a failure does not hang the package.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	key := "file:" + filepath.Join(t.TempDir(), "k.key")
	if r := coldharbor(t, pw, "keys", "generate", key); r.code != 0 {
		t.Fatal(r.stderr)
	}
	for _, args := range [][]string{{"inspect", fifo}, {"sign", fifo, "--repo", t.TempDir(), "--key", key, "-o", filepath.Join(t.TempDir(), "a.tar")}} {
		done := make(chan result, 1)
		go func() { done <- coldharbor(t, pw, args...) }()
		select {
		case r := <-done:
			if r.code != exitRefused {
				t.Fatalf("%s: exit %d, want 3; stderr:\n%s", args[0], r.code, r.stderr)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s hung on a FIFO", args[0])
		}
	}
}
