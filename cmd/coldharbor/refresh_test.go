package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newRepo holds a ceremony with file keys (online keys present) and
// returns the repository and a key-URI helper.
func newRepo(t *testing.T) (repo string, key func(string) string) {
	dir := t.TempDir()
	key = func(k string) string { return "file:" + filepath.Join(dir, k+".key") }
	for _, k := range []string{"root", "targets", "snapshot", "timestamp"} {
		if r := coldharbor(t, pw, "keys", "generate", key(k)); r.code != 0 {
			t.Fatal(r.stderr)
		}
	}
	repo = filepath.Join(dir, "repo")
	r := coldharbor(t, pw, "ceremony", "init", "--repo", repo, "--root-key", key("root"), "--targets-key", key("targets"),
		"--snapshot-key", key("snapshot"), "--timestamp-key", key("timestamp"))
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	return repo, key
}

func TestRefreshExitCodes(t *testing.T) {
	repo, key := newRepo(t)
	// Nothing due: exit 0, one line per role.
	r := coldharbor(t, pw, "refresh", "--repo", repo, "--timestamp-key", key("timestamp"))
	if r.code != 0 || !strings.Contains(r.stdout, "nothing due") || strings.Count(r.stdout, "expires") < 4 {
		t.Fatalf("refresh, nothing due: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Forced: a new timestamp.
	r = coldharbor(t, pw, "refresh", "--repo", repo, "--timestamp-key", key("timestamp"), "--force", "--output", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"timestamp_version": 2`) {
		t.Fatalf("refresh --force: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Targets (90 days) within a 100-day window: exit 4 naming the role and date.
	r = coldharbor(t, pw, "refresh", "--repo", repo, "--timestamp-key", key("timestamp"), "--warn", "100d")
	if r.code != exitExpiring {
		t.Fatalf("refresh --warn 100d: exit %d\n%s", r.code, r.stderr)
	}
	oneLineError(t, r, "targets v1 expires 20")
	// The wrong key for timestamp: exit 3.
	r = coldharbor(t, pw, "refresh", "--repo", repo, "--timestamp-key", key("snapshot"), "--force")
	if r.code != exitRefused {
		t.Fatalf("refresh with the snapshot key: exit %d\n%s", r.code, r.stderr)
	}
	// A repository whose snapshot was tampered with: exit 3, nothing written.
	snap := filepath.Join(repo, "metadata", "1.snapshot.json")
	data, _ := os.ReadFile(snap)
	os.WriteFile(snap, []byte(strings.Replace(string(data), "targets.json", "targetz.json", 1)), 0o644)
	r = coldharbor(t, pw, "refresh", "--repo", repo, "--timestamp-key", key("timestamp"), "--force")
	if r.code != exitRefused {
		t.Fatalf("refresh on a tampered snapshot: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestRefreshBundle(t *testing.T) {
	signer, key := newRepo(t)
	site := filepath.Join(t.TempDir(), "site")
	if err := os.CopyFS(site, os.DirFS(signer)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "refresh.tar")
	r := coldharbor(t, pw, "refresh", "--repo", signer, "--timestamp-key", key("timestamp"), "--snapshot-key", key("snapshot"), "--force", "--out", out)
	if r.code != 0 {
		t.Fatalf("refresh --out: %d %s", r.code, r.stderr)
	}
	if r = coldharbor(t, nil, "import", out, "--repo", site); r.code != 0 || !strings.Contains(r.stdout, "timestamp v2") {
		t.Fatalf("import refresh.tar: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The same refresh bundle again: not above the trusted version, exit 3.
	r = coldharbor(t, nil, "import", out, "--repo", site)
	if r.code != exitRefused {
		t.Fatalf("replayed refresh bundle: exit %d\n%s", r.code, r.stderr)
	}
	oneLineError(t, r, "not above the trusted timestamp v2")
	// The signer recorded v2: its next bundle is v3 and applies.
	r = coldharbor(t, pw, "refresh", "--repo", signer, "--timestamp-key", key("timestamp"), "--force", "--out", out)
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r = coldharbor(t, nil, "import", out, "--repo", site, "--output", "json"); r.code != 0 || !strings.Contains(r.stdout, `"timestamp_version": 3`) {
		t.Fatalf("second refresh bundle: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
