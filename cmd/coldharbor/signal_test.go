package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMStopsPromptly (issue 11, finding 3): SIGTERM stops the
// process even while it is blocked where no context reaches (here, opening
// a FIFO that nobody writes to, as --images-from).
func TestSIGTERMStopsPromptly(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "coldharbor")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fifo := filepath.Join(dir, "images.txt")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "export", "--images-from", fifo, "--repo", dir, "--dest", "127.0.0.1:1/x", "-o", filepath.Join(dir, "b.tar"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("exit 0 after SIGTERM")
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("SIGTERM was swallowed: still running 15 s later")
	}
}
