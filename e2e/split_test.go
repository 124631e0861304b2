package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

// TestSplitPipeline: export --split cuts the bundle into parts; the signer
// gets only the first part; inspect and import take the first part and
// find the rest; a missing part is named (exit 3) before anything is pushed.
func TestSplitPipeline(t *testing.T) {
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
	for _, k := range []string{"root", "targets", "snapshot", "timestamp"} {
		must(t, w.env, "keys", "generate", "file:"+w.path("keys", k+".key"))
	}
	key := func(k string) string { return "file:" + w.path("keys", k+".key") }
	must(t, w.env, "ceremony", "init", "--repo", w.path("signer"), "--root-key", key("root"), "--targets-key", key("targets"),
		"--snapshot-key", w.path("keys", "snapshot.key.pub"), "--timestamp-key", w.path("keys", "timestamp.key.pub"))
	testfs.CopyDir(t, w.path("signer"), w.path("isolated"))
	dest := w.dst.Host + "/mirror"
	os.MkdirAll(w.path("usb"), 0o755)
	must(t, w.env, "export", "--repo", w.path("signer"), "--dest", dest, "-o", w.path("usb", "b.tar"), "--split", "24K",
		w.src.Host+"/"+testimages.MultiArch, w.src.Host+"/"+testimages.AppOne)
	parts, _ := filepath.Glob(w.path("usb", "b.tar.*"))
	if len(parts) < 2 {
		t.Fatalf("export --split 24K made %v", parts)
	}
	for _, p := range parts {
		if fi, err := os.Stat(p); err != nil || fi.Size() > 24<<10 {
			t.Fatalf("%s: %v, %d bytes", p, err, fi.Size())
		}
	}
	// The signer's machine gets the first part only.
	os.MkdirAll(w.path("signer-usb"), 0o755)
	data, _ := os.ReadFile(w.path("usb", "b.tar.000"))
	os.WriteFile(w.path("signer-usb", "b.tar.000"), data, 0o644)
	must(t, w.env, "sign", w.path("signer-usb", "b.tar.000"), "--repo", w.path("signer"), "--key", key("targets"), "-o", w.path("a.tar"), "--yes")
	if out := must(t, w.env, "inspect", w.path("usb", "b.tar.000")); !strings.Contains(out, "split bundle: this first part and") {
		t.Errorf("inspect of a split bundle:\n%s", out)
	}
	imp := []string{"import", w.path("usb", "b.tar.000"), w.path("a.tar"), "--repo", w.path("isolated"), "--registry", dest,
		"--snapshot-key", key("snapshot"), "--timestamp-key", key("timestamp")}
	last := parts[len(parts)-1]
	os.Rename(last, last+".away")
	refused(t, w.env, filepath.Base(last)+": missing", imp...)
	os.Rename(last+".away", last)
	must(t, w.env, imp...)
	must(t, w.env, "verify", "--repo", w.path("isolated"), "--registry", dest, dest+"/"+testimages.AppOne)
}
