package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A timestamp-key rotation on the signer's side reaches a site that takes
// only refresh bundles: the bundle carries root v2, the site publishes it
// with the timestamp signed by the new key, and the old key is refused at
// the signer naming the rotation.
func TestRotateTimestampKeyThroughRefreshBundle(t *testing.T) {
	signer, key := newRepo(t)
	site := filepath.Join(t.TempDir(), "site")
	if err := os.CopyFS(site, os.DirFS(signer)); err != nil {
		t.Fatal(err)
	}
	if r := coldharbor(t, pw, "keys", "generate", key("timestamp2")); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := coldharbor(t, pw, "ceremony", "rotate", "--repo", signer, "--timestamp-key", key("timestamp2"), "--key", key("root"), "--output", "json")
	if r.code != 0 {
		t.Fatalf("rotate --timestamp-key: %d\n%s", r.code, r.stderr)
	}
	var res struct {
		Version int64    `json:"version"`
		Changed []string `json:"changed"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Version != 2 || strings.Join(res.Changed, ",") != "timestamp" {
		t.Fatalf("rotation: %v %s", err, r.stdout)
	}
	out := filepath.Join(t.TempDir(), "refresh.tar")
	r = coldharbor(t, pw, "refresh", "--repo", signer, "--timestamp-key", key("timestamp"), "--out", out)
	if r.code != exitRefused {
		t.Fatalf("refresh with the rotated-out key: exit %d\n%s", r.code, r.stderr)
	}
	oneLineError(t, r, "root v2 rotated it out")
	r = coldharbor(t, pw, "refresh", "--repo", signer, "--timestamp-key", key("timestamp2"), "--out", out)
	if r.code != 0 {
		t.Fatalf("refresh with the new key: %d\n%s", r.code, r.stderr)
	}
	if r = coldharbor(t, nil, "import", out, "--repo", site); r.code != 0 || !strings.Contains(r.stdout, "timestamp v2") {
		t.Fatalf("import refresh.tar with root v2: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(site, "metadata", "2.root.json")); err != nil {
		t.Fatal("the site did not publish root v2")
	}
	if r = coldharbor(t, nil, "status", "--repo", site); r.code != 0 || !regexp.MustCompile(`(?m)^root\s+2\s`).MatchString(r.stdout) {
		t.Fatalf("status of the site: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
