package gate

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The static file server must never follow a link, at any level: a link
// planted as a directory under targets/ would otherwise serve the host.
func TestDirSourceRefusesLinks(t *testing.T) {
	repo, outside := t.TempDir(), t.TempDir()
	mustWrite := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(filepath.Join(repo, "targets", "app", "ok.json"), "ok")
	mustWrite(filepath.Join(outside, "secret"), "host file")
	if err := os.Symlink(outside, filepath.Join(repo, "targets", "linkdir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(repo, "targets", "app", "link.json")); err != nil {
		t.Fatal(err)
	}
	src := dirSource{dir: repo}
	rc, size, err := src.open(context.Background(), "targets/app/ok.json")
	if err != nil {
		t.Fatalf("a regular file: %v", err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if string(body) != "ok" || size != 2 {
		t.Fatalf("read %q (%d bytes), want \"ok\"", body, size)
	}
	for _, rel := range []string{
		"targets/linkdir/secret", // a linked directory
		"targets/app/link.json",  // a linked file
		"targets/../targets/app/ok.json",
		"targets/app", // a directory
		"targets//app/ok.json",
	} {
		if rc, _, err := src.open(context.Background(), rel); err == nil {
			rc.Close()
			t.Errorf("%s: served, want refused", rel)
		}
	}
}
