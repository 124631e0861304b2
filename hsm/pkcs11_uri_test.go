package hsm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeModule is any regular file: parsing checks the path, not the library.
func fakeModule(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "libp11.so")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePKCS11(t *testing.T) {
	mod := fakeModule(t)
	link := filepath.Join(t.TempDir(), "link.so")
	if err := os.Symlink(mod, link); err != nil {
		t.Fatal(err)
	}
	u, _ := ParseURI("pkcs11:token=A%20B;serial=12;slot-id=7;object=ts;id=%01%FF;type=private?module-path=" + link)
	s, err := parsePKCS11(u)
	if err != nil {
		t.Fatal(err)
	}
	if s.module != mod {
		t.Errorf("module %q, want the symlink resolved to %q", s.module, mod)
	}
	if s.label != "ts" || string(s.id) != "\x01\xff" || s.token["token"] != "A B" || s.token["serial"] != "12" || s.slotID == nil || *s.slotID != 7 {
		t.Errorf("parsed %+v", s)
	}

	for _, c := range []struct{ uri, want string }{
		{"pkcs11:token=t;object=k", "module-path is missing"},
		{"pkcs11:token=t;label=k?module-path=" + mod, `unknown attribute "label"`},
		{"pkcs11:token=t;object=k;type=cert?module-path=" + mod, "type=cert"},
		{"pkcs11:token=t;object=k?module-name=softhsm2&module-path=" + mod, "module-name is not supported"},
		{"pkcs11:token=t;object=k?module-path=" + mod + "&pin-value=1&pin-source=/x", "not both"},
		{"pkcs11:slot-id=x;object=k?module-path=" + mod, "not a decimal number"},
		{"pkcs11:token=t;object=?module-path=" + mod, "object= is empty"},
		{"pkcs11:token=t;object=k?module-path=" + filepath.Dir(mod), "not a regular file"},
		{"pkcs11:token=t;object=k?module-path=" + mod + "&verbose=1", `unknown query attribute "verbose"`},
	} {
		u, err := ParseURI(c.uri)
		if err == nil {
			_, err = parsePKCS11(u)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.uri, err, c.want)
		}
	}
}

func TestP11Escape(t *testing.T) {
	if got := p11Escape("/usr/lib/a b;c&d=e.so", "/"); got != "/usr/lib/a%20b%3Bc%26d%3De.so" {
		t.Errorf("query escape: %s", got)
	}
	if got := p11Escape("a/b", ""); got != "a%2Fb" {
		t.Errorf("path escape: %s", got)
	}
	// What we write, ParseURI reads back.
	label := "site a/b;c=d%"
	u, err := ParseURI("pkcs11:token=" + p11Escape(label, "") + "?module-path=" + p11Escape("/x y/&z", "/"))
	if err != nil || u.Attrs["token"] != label || u.Query["module-path"] != "/x y/&z" {
		t.Errorf("round trip: %+v %v", u, err)
	}
}

func TestReadPINSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unix, dos, spaced := write("unix", "1234\n"), write("dos", "1234\r\n"), write("spaced", " 12 34 ")
	for src, want := range map[string]string{
		unix: "1234", "file:" + unix: "1234", "file://" + unix: "1234", "file://localhost" + unix: "1234",
		dos: "1234", spaced: " 12 34 ",
	} {
		got, err := readPINSource(src)
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", src, got, err, want)
		}
	}
	for src, want := range map[string]string{
		"|/bin/cat /etc/pin":                            "runs a command",
		"file://elsewhere/etc/pin":                      "on host",
		"https://example.com/pin":                       "only file:",
		write("empty", "\n"):                            "is empty",
		write("big", strings.Repeat("1", maxPINFile+1)): "larger than",
		dir:                           "not a regular file",
		filepath.Join(dir, "missing"): "no such file",
	} {
		_, err := readPINSource(src)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", src, err, want)
		}
	}
}

func TestPKCS11PINOrder(t *testing.T) {
	mod := fakeModule(t)
	pinFile := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pinFile, []byte("from-file\n"), 0o600)
	secret := func(context.Context, SecretRequest) ([]byte, error) { return []byte("from-secret"), nil }
	for uri, want := range map[string]string{
		"pkcs11:token=t;object=k?module-path=" + mod + "&pin-value=from-uri":    "from-uri",
		"pkcs11:token=t;object=k?module-path=" + mod + "&pin-source=" + pinFile: "from-file",
		"pkcs11:token=t;object=k?module-path=" + mod:                            "from-secret",
	} {
		u, _ := ParseURI(uri)
		s, err := parsePKCS11(u)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.pin(context.Background(), &options{secret: secret})
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", uri, got, err, want)
		}
	}
	u, _ := ParseURI("pkcs11:token=t;object=k?module-path=" + mod)
	s, _ := parsePKCS11(u)
	if _, err := s.pin(context.Background(), &options{}); !errors.Is(err, ErrNoSecret) {
		t.Errorf("no PIN source: got %v, want ErrNoSecret", err)
	}
}

func TestWithPKCS11Modules(t *testing.T) {
	o, err := makeOptions([]Option{WithPKCS11Modules("/a.so"), WithPKCS11Modules("/b.so")})
	if err != nil || strings.Join(o.pkcs11Modules, ",") != "/a.so,/b.so" {
		t.Errorf("got %v, %v", o, err)
	}
	if _, err := makeOptions([]Option{WithPKCS11Modules("")}); err == nil {
		t.Error("an empty module path was accepted")
	}
}
