package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

// TestREADMEKeyLifecycle runs README.md's "The key lifecycle" section as
// written: every ```sh block, in order, in one shell, after the setup the
// section describes (a ceremony, copies, a first bundle imported).
func TestREADMEKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	fix, err := testimages.New(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testimages.Push(ctx, w.src.Host, fix, remote.WithAuthFromKeychain(w.src.Keychain()), remote.WithTransport(w.src.Transport())); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(w.path("keys"), 0o700)
	key := func(k string) string { return "file:" + w.path("keys", k+".key") }
	for _, k := range []string{"root", "targets", "snapshot", "timestamp"} {
		must(t, w.env, "keys", "generate", key(k))
	}
	must(t, w.env, "ceremony", "init", "--repo", w.path("signer"), "--root-key", key("root"), "--targets-key", key("targets"),
		"--snapshot-key", w.path("keys", "snapshot.key.pub"), "--timestamp-key", w.path("keys", "timestamp.key.pub"))
	testfs.CopyDir(t, w.path("signer"), w.path("isolated"))
	testfs.CopyDir(t, w.path("signer"), w.path("exporter"))
	dest := w.dst.Host + "/mirror"
	must(t, w.env, "export", "--repo", w.path("exporter"), "--dest", dest, "-o", w.path("b1.tar"), w.src.Host+"/"+testimages.AppOne)
	must(t, w.env, "sign", w.path("b1.tar"), "--repo", w.path("signer"), "--key", key("targets"), "-o", w.path("a1.tar"), "--yes")
	must(t, w.env, "import", w.path("b1.tar"), w.path("a1.tar"), "--repo", w.path("isolated"), "--registry", dest,
		"--snapshot-key", key("snapshot"), "--timestamp-key", key("timestamp"))

	script := readmeSection(t, "### The key lifecycle")
	cmd := exec.CommandContext(t.Context(), "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = w.work
	cmd.Env = append([]string{"PATH=" + filepath.Dir(bin) + ":" + os.Getenv("PATH"), "SRC=" + w.src.Host, "DEST=" + dest}, w.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's key lifecycle section: %v\n%s", err, out)
	}
	for _, want := range []string{"PARTIAL: 1 more targets signature(s) needed (threshold 2)", "state: complete",
		"root v2 rotated it out", "FINAL HASH (read aloud): ", ": rotate, ", "no hardware attestation is recorded", "refused: exit 3"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the section's output does not say %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// readmeSection returns the ```sh blocks of the README section whose
// heading starts with heading, up to the next heading of its level or above.
func readmeSection(t *testing.T, heading string) string {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading)
	if i < 0 {
		t.Fatalf("README.md has no section %q", heading)
	}
	s = s[i+1:]
	if j := regexp.MustCompile(`\n#{1,3} `).FindStringIndex(s[1:]); j != nil {
		s = s[:j[0]+1]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(s, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) == 0 {
		t.Fatalf("section %q has no sh block", heading)
	}
	return strings.Join(blocks, "\n")
}
