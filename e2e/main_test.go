// Package e2e runs the coldharbor binary end to end against real parts:
// the CNCF distribution registry (TLS, htpasswd auth) for source and target,
// and the pinned cosign CLI to verify what import pushed.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bin is the coldharbor binary built once for the package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coldharbor-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "coldharbor")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/coldharbor").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// run executes coldharbor with exactly env (plus PATH), no stdin.
func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running coldharbor: %v", err)
	}
	return result{code, out.String(), errb.String()}
}

// must runs coldharbor and fails the test unless it exits 0.
func must(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := run(t, env, args...)
	if r.code != 0 {
		t.Fatalf("coldharbor %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// refused runs coldharbor and fails the test unless it exits 3 with an
// error naming want.
func refused(t *testing.T, env []string, want string, args ...string) {
	t.Helper()
	r := run(t, env, args...)
	if r.code != 3 || !strings.Contains(r.stderr, want) {
		t.Fatalf("coldharbor %s: exit %d, want 3 with %q\n%s%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
}
