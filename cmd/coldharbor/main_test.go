package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

type result struct {
	code           int
	stdout, stderr string
}

// coldharbor runs the command in-process with the given environment
// variables only (no terminal: never a prompt).
func coldharbor(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"coldharbor"}, args...), env{
		stdout: &out, stderr: &errb,
		getenv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
	})
	return result{code, out.String(), errb.String()}
}

// oneLineError checks the error convention: one "coldharbor: error:" line,
// at most one hint line, nothing else.
func oneLineError(t *testing.T, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) < 1 || len(lines) > 2 || !strings.HasPrefix(lines[0], "coldharbor: error: ") {
		t.Fatalf("stderr is not one error line (+ hint):\n%s", r.stderr)
	}
	if len(lines) == 2 && !strings.HasPrefix(lines[1], "coldharbor: hint: ") {
		t.Fatalf("second stderr line is not a hint:\n%s", r.stderr)
	}
	if !strings.Contains(lines[0], want) {
		t.Fatalf("error %q does not say %q", lines[0], want)
	}
}

var pw = map[string]string{"COLDHARBOR_PASSWORD": "correct horse"}

func TestHelpExplainsEveryFlag(t *testing.T) {
	app := newApp(env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}})
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Name == "help" {
				continue
			}
			path := append(append([]string{}, prefix...), c.Name)
			if c.Usage == "" {
				t.Errorf("%s has no usage line", strings.Join(path, " "))
			}
			r := coldharbor(t, nil, append(path, "--help")...)
			if r.code != 0 {
				t.Errorf("%s --help exit %d: %s", strings.Join(path, " "), r.code, r.stderr)
			}
			for _, f := range c.Flags {
				name := f.Names()[0]
				df, ok := f.(cli.DocGenerationFlag)
				if !ok || df.GetUsage() == "" {
					t.Errorf("%s --%s has no usage text", strings.Join(path, " "), name)
				}
				if !strings.Contains(r.stdout, "--"+name) {
					t.Errorf("%s --help does not show --%s", strings.Join(path, " "), name)
				}
			}
			if len(c.Subcommands) == 0 && c.Description == "" {
				t.Errorf("%s has no description", strings.Join(path, " "))
			}
			walk(path, c.Subcommands)
		}
	}
	walk(nil, app.Commands)
	if r := coldharbor(t, nil, "--help"); r.code != 0 || !strings.Contains(r.stdout, "Exit codes") {
		t.Errorf("coldharbor --help: %d\n%s", r.code, r.stdout)
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	// The YubiKey case must not reach the host's pcscd: other test binaries
	// may be using its readers, and a piv-go Open that fails there leaks an
	// exclusive handle for as long as this process lives.
	t.Setenv("PCSCLITE_CSOCK_NAME", filepath.Join(t.TempDir(), "no-pcscd"))
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	if r := coldharbor(t, pw, "keys", "generate", "file:"+key); r.code != 0 {
		t.Fatalf("keys generate: %d %s", r.code, r.stderr)
	}
	tests := []struct {
		name string
		vars map[string]string
		args []string
		code int
		want string
	}{
		{"unknown scheme", pw, []string{"keys", "pub", "vault:secret/x"}, exitError, `unknown key scheme "vault"`},
		{"wrong password", map[string]string{"COLDHARBOR_PASSWORD": "wrong"}, []string{"keys", "pub", "file:" + key}, exitError, "wrong password"},
		{"no password no terminal", nil, []string{"keys", "pub", "file:" + key}, exitError, "set COLDHARBOR_PASSWORD"},
		{"missing file", pw, []string{"keys", "pub", "file:" + filepath.Join(dir, "absent.key")}, exitError, "no such file"},
		{"no yubikey", pw, []string{"keys", "pub", "yubikey:serial=1"}, exitError, "no YubiKey found"},
		{"unknown command", nil, []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"unknown subcommand", nil, []string{"keys", "frobnicate"}, exitUsage, "unknown command"},
		{"unknown flag", nil, []string{"status", "--frob"}, exitUsage, "flag provided but not defined"},
		{"missing repo", nil, []string{"status"}, exitUsage, "--repo DIR is required"},
		{"bad output", nil, []string{"status", "--repo", dir, "--output", "yaml"}, exitUsage, "--output must be text or json"},
		{"bad duration", nil, []string{"status", "--repo", dir, "--warn", "3 weeks"}, exitUsage, "invalid duration"},
		{"two args", nil, []string{"keys", "pub", "a", "b"}, exitUsage, "exactly one URI"},
		{"not a repository", nil, []string{"status", "--repo", dir}, exitError, "no trusted root"},
		{"init bad scheme", pw, []string{"ceremony", "init", "--repo", dir, "--root-key", "vault:x", "--targets-key", "file:" + key, "--snapshot-key", key, "--timestamp-key", key}, exitUsage, "unknown key scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := coldharbor(t, tt.vars, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", r.code, tt.code, r.stderr)
			}
			oneLineError(t, r, tt.want)
			if strings.Contains(r.stderr, "correct horse") {
				t.Fatal("the password reached stderr")
			}
		})
	}
}

func TestCeremonyInitAndStatus(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	for _, k := range []string{"root1", "root2", "root3", "targets", "snapshot", "timestamp"} {
		if r := coldharbor(t, pw, "keys", "generate", "file:"+filepath.Join(dir, k+".key")); r.code != 0 {
			t.Fatalf("keys generate %s: %s", k, r.stderr)
		}
	}
	k := func(name string) string { return "file:" + filepath.Join(dir, name) }
	args := []string{"ceremony", "init", "--repo", repo,
		"--root-key", k("root1.key"), "--root-key", k("root2.key"), "--root-key", filepath.Join(dir, "root3.key.pub"),
		"--root-threshold", "2", "--targets-key", k("targets.key"),
		"--snapshot-key", k("snapshot.key"), "--timestamp-key", k("timestamp.key"), "--output", "json"}
	r := coldharbor(t, pw, args...)
	if r.code != 0 {
		t.Fatalf("ceremony init: %d\n%s", r.code, r.stderr)
	}
	var res struct {
		RootSHA256 string `json:"root_sha256"`
		Roles      map[string]struct {
			Threshold int      `json:"threshold"`
			KeyIDs    []string `json:"keyids"`
			SignedBy  []string `json:"signed_by"`
		} `json:"roles"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("init --output json is not JSON: %v\n%s", err, r.stdout)
	}
	if len(res.RootSHA256) != 64 || res.Roles["root"].Threshold != 2 || len(res.Roles["root"].SignedBy) != 2 {
		t.Fatalf("init result: %+v", res)
	}
	// Again without --force: refused, exit 1, repository untouched.
	again := coldharbor(t, pw, args...)
	if again.code != exitError {
		t.Fatalf("second init exit %d", again.code)
	}
	oneLineError(t, again, "already holds a TUF repository")

	st := coldharbor(t, nil, "status", "--repo", repo)
	if st.code != 0 {
		t.Fatalf("status: %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		if !strings.Contains(st.stdout, role) {
			t.Errorf("status does not show %s:\n%s", role, st.stdout)
		}
	}
	// A window wider than the timestamp's day: exit 4, naming the role.
	warn := coldharbor(t, nil, "status", "--repo", repo, "--warn", "2d", "--output", "json")
	if warn.code != exitExpiring {
		t.Fatalf("status --warn 2d exit %d, want 4\n%s", warn.code, warn.stderr)
	}
	oneLineError(t, warn, "timestamp v1 expires")
	var js struct {
		Roles []struct {
			Role  string `json:"role"`
			State string `json:"state"`
		} `json:"roles"`
	}
	if err := json.Unmarshal([]byte(warn.stdout), &js); err != nil || len(js.Roles) != 4 {
		t.Fatalf("status json: %v\n%s", err, warn.stdout)
	}
	// A tampered timestamp: exit 3.
	ts := filepath.Join(repo, "metadata", "timestamp.json")
	data, _ := os.ReadFile(ts)
	os.WriteFile(ts, bytes.Replace(data, []byte(`"version": 1`), []byte(`"version": 7`), 1), 0o644)
	bad := coldharbor(t, nil, "status", "--repo", repo)
	if bad.code != exitRefused {
		t.Fatalf("status on a tampered timestamp exit %d, want 3\n%s", bad.code, bad.stderr)
	}
	oneLineError(t, bad, "timestamp v1: unsigned metadata error")
}

// TestBinaryExitCodes runs the built binary, so os.Exit and urfave's own
// paths are covered too.
func TestBinaryExitCodes(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "coldharbor")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"--version"}, 0},
		{[]string{"nonsense"}, 2},
		{[]string{"keys", "pub", "gcpkms://x"}, 1},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code {
			t.Errorf("coldharbor %v: exit %d, want %d", tt.args, code, tt.code)
		}
	}
}
