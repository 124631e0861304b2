package main

import (
	"strings"
	"testing"
	"time"
)

// TestPlainHTTPRefusedForPrivateRegistry (issue 11, finding 9): a TUF server
// or registry at an RFC 1918 address over plain HTTP is refused before any
// request goes out, and the error says how to allow it.
func TestPlainHTTPRefusedForPrivateRegistry(t *testing.T) {
	start := time.Now()
	r := coldharbor(t, nil, "list", "--tuf-url", "http://10.255.255.1:5000/tuf", "--root", "../../testdata/golden/repo/metadata/1.root.json",
		"--cache", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "--insecure-registry 10.255.255.1:5000") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s: a connection was attempted", d)
	}
}

// TestNetworkFlags: every command that talks to a registry or a TUF server
// has --insecure-registry and --timeout.
func TestNetworkFlags(t *testing.T) {
	app := newApp(env{})
	for _, name := range []string{"export", "import", "list", "verify"} {
		cmd := app.Command(name)
		if cmd == nil {
			t.Fatalf("no command %s", name)
		}
		have := map[string]bool{}
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				have[n] = true
			}
		}
		for _, f := range []string{"insecure-registry", "timeout"} {
			if !have[f] {
				t.Errorf("%s has no --%s", name, f)
			}
		}
	}
}
