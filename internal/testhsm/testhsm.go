// Package testhsm makes SoftHSM2 tokens for tests, each in its own
// temporary directory, so tests neither share tokens nor leave any behind.
//
// SoftHSM2 reads SOFTHSM2_CONF when the module is initialised, and a module
// stays initialised while any key opened from it is open: close every key
// before the test ends. NewToken sets the variable with t.Setenv, so tests
// that use it cannot run in parallel.
package testhsm

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/internal/testenv"
)

// DefaultModule is where Debian's softhsm2 package puts the library;
// COLDHARBOR_SOFTHSM2_MODULE overrides it.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// The PINs every test token gets.
const (
	PIN   = "1234"
	SOPIN = "5678"
)

// Token is one initialised SoftHSM2 token.
type Token struct {
	Module string // the PKCS#11 library
	Label  string
	PIN    string
	Dir    string // SoftHSM2's token directory
}

// NewToken initialises a token labelled label (default "coldharbor-test")
// in a fresh SoftHSM2 directory and points SOFTHSM2_CONF at it. It skips
// the test when SoftHSM2 is missing, or fails it under CI=true.
func NewToken(t testing.TB, label string) *Token {
	t.Helper()
	mod := os.Getenv("COLDHARBOR_SOFTHSM2_MODULE")
	if mod == "" {
		mod = DefaultModule
	}
	if _, err := os.Stat(mod); err != nil {
		testenv.Need(t, "the SoftHSM2 module "+mod, "apt-get install softhsm2, or set COLDHARBOR_SOFTHSM2_MODULE")
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		testenv.Need(t, "softhsm2-util", "apt-get install softhsm2")
	}
	if label == "" {
		label = "coldharbor-test"
	}
	root := t.TempDir()
	dir := filepath.Join(root, "tokens")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "softhsm2.conf")
	cfg := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", dir)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	tk := &Token{Module: mod, Label: label, PIN: PIN, Dir: dir}
	tk.util(t, "--init-token", "--free", "--label", label, "--so-pin", SOPIN, "--pin", PIN)
	return tk
}

// AddToken initialises another token in the same SoftHSM2 directory.
func (tk *Token) AddToken(t testing.TB, label string) *Token {
	t.Helper()
	tk.util(t, "--init-token", "--free", "--label", label, "--so-pin", SOPIN, "--pin", PIN)
	return &Token{Module: tk.Module, Label: label, PIN: PIN, Dir: tk.Dir}
}

// URI names an object of the token: attrs ("object=ts;id=%01") go in the
// path, then the module and the PIN in the query.
func (tk *Token) URI(attrs string) string {
	u := "pkcs11:token=" + url.PathEscape(tk.Label)
	if attrs != "" {
		u += ";" + attrs
	}
	return u + "?module-path=" + tk.Module + "&pin-value=" + url.PathEscape(tk.PIN)
}

// ImportKey puts a key pair on the token with softhsm2-util, a second tool
// beside the code under test (and one that can store keys coldharbor
// refuses to make, such as P-384).
func (tk *Token) ImportKey(t testing.TB, label string, id []byte, key crypto.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	// --force: SoftHSM2 refuses a second key pair with an id already used.
	tk.util(t, "--import", f, "--token", tk.Label, "--label", label, "--id", hex.EncodeToString(id), "--pin", tk.PIN, "--force")
}

func (tk *Token) util(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("softhsm2-util", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
