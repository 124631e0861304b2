//go:build cgo

package e2e

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testhsm"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

// TestOnlineKeysInHSM keeps the snapshot and timestamp keys on a PKCS#11
// token (SoftHSM2), as an isolated network would in its HSM, and uses them
// through the ceremony, an import and refreshes.
func TestOnlineKeysInHSM(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	tok := testhsm.NewToken(t, "isolated")
	// keys list also looks for YubiKeys: keep it off the host's pcscd, which
	// other test binaries may be using.
	w.env = append(w.env, "SOFTHSM2_CONF="+os.Getenv("SOFTHSM2_CONF"), "COLDHARBOR_PIN="+tok.PIN, "PCSCLITE_CSOCK_NAME="+w.path("no-pcscd"))
	fix, err := testimages.New(3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testimages.Push(ctx, w.src.Host, fix, remote.WithAuthFromKeychain(w.src.Keychain()), remote.WithTransport(w.src.Transport())); err != nil {
		t.Fatal(err)
	}
	p11 := func(object string) string {
		return "pkcs11:token=isolated;object=" + object + "?module-path=" + tok.Module
	}
	for _, k := range []string{"snapshot", "timestamp"} {
		out := must(t, w.env, "keys", "generate", p11(k))
		if !strings.Contains(out, "BEGIN PUBLIC KEY") {
			t.Fatalf("keys generate %s printed:\n%s", k, out)
		}
	}
	list := must(t, w.env, "keys", "list", "--pkcs11-module", tok.Module)
	if !strings.Contains(list, "isolated") || !strings.Contains(list, "object=snapshot") || !strings.Contains(list, "object=timestamp") {
		t.Fatalf("keys list:\n%s", list)
	}
	os.MkdirAll(w.path("keys"), 0o700)
	for _, k := range []string{"root", "targets"} {
		must(t, w.env, "keys", "generate", "file:"+w.path("keys", k+".key"))
	}
	must(t, w.env, "ceremony", "init", "--repo", w.path("isolated"),
		"--root-key", "file:"+w.path("keys", "root.key"), "--targets-key", "file:"+w.path("keys", "targets.key"),
		"--snapshot-key", p11("snapshot"), "--timestamp-key", p11("timestamp"))
	must(t, w.env, "status", "--repo", w.path("isolated"))
	testfs.CopyDir(t, w.path("isolated"), w.path("signer"))

	dest := w.dst.Host + "/hsm"
	must(t, w.env, "export", "--repo", w.path("isolated"), "--dest", dest, "-o", w.path("b.tar"), w.src.Host+"/"+testimages.AppTwo)
	must(t, w.env, "sign", w.path("b.tar"), "--repo", w.path("signer"), "--key", "file:"+w.path("keys", "targets.key"), "-o", w.path("a.tar"), "--yes")
	out := must(t, w.env, "import", w.path("b.tar"), w.path("a.tar"), "--repo", w.path("isolated"), "--registry", dest,
		"--snapshot-key", p11("snapshot"), "--timestamp-key", p11("timestamp"))
	if !strings.Contains(out, "snapshot v2, timestamp v2") {
		t.Fatalf("import:\n%s", out)
	}
	out = must(t, w.env, "refresh", "--repo", w.path("isolated"), "--timestamp-key", p11("timestamp"), "--snapshot-key", p11("snapshot"), "--force")
	if !strings.Contains(out, "refreshed") {
		t.Fatalf("refresh:\n%s", out)
	}
	must(t, w.env, "verify", "--repo", w.path("isolated"), "--registry", dest, dest+"/"+testimages.AppTwo)
	// A wrong PIN is an error (exit 1) that says so, and never shows the PIN.
	bad := append(append([]string{}, w.env...), "COLDHARBOR_PIN=9999")
	r := run(t, bad, "refresh", "--repo", w.path("isolated"), "--timestamp-key", p11("timestamp"), "--force")
	if r.code != 1 || !strings.Contains(strings.ToLower(r.stderr), "pin") || strings.Contains(r.stderr, "9999") {
		t.Fatalf("refresh with a wrong PIN: exit %d\n%s", r.code, r.stderr)
	}
}
