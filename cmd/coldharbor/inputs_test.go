package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// secretVars are the variables a key asks for its password or PIN.
var secretVars = []string{"COLDHARBOR_PASSWORD", "COSIGN_PASSWORD", "COLDHARBOR_PIN"}

// runRecording runs the command like coldharbor, and reports whether it
// asked for a password or PIN.
func runRecording(t *testing.T, args ...string) (result, bool) {
	t.Helper()
	var out, errb bytes.Buffer
	asked := false
	code := run(context.Background(), append([]string{"coldharbor"}, args...), env{
		stdout: &out, stderr: &errb,
		getenv: func(k string) (string, bool) {
			if slices.Contains(secretVars, k) {
				asked = true
				return pw["COLDHARBOR_PASSWORD"], true
			}
			return "", false
		},
	})
	return result{code, out.String(), errb.String()}, asked
}

// Every command checks its flags, arguments and input paths before it opens
// a key: a mistake must not cost a password, a PIN try or a touch.
func TestInputsCheckedBeforeAnySecret(t *testing.T) {
	dir := t.TempDir()
	key := "file:" + filepath.Join(dir, "k.key")
	if r := coldharbor(t, pw, "keys", "generate", key); r.code != 0 {
		t.Fatalf("keys generate: %s", r.stderr)
	}
	missing := filepath.Join(dir, "absent")
	repo := dir // exists; the checks below fail before it is read
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"init: attestation CA missing", []string{"ceremony", "init", "--repo", filepath.Join(dir, "new"), "--root-key", key, "--targets-key", key,
			"--snapshot-key", key, "--timestamp-key", key, "--attestation-ca", missing}, "absent"},
		{"init: a later key file missing", []string{"ceremony", "init", "--repo", filepath.Join(dir, "new"), "--root-key", key,
			"--targets-key", "file:" + missing, "--snapshot-key", key, "--timestamp-key", key}, "absent"},
		{"init: bad expiry", []string{"ceremony", "init", "--repo", filepath.Join(dir, "new"), "--root-key", key, "--targets-key", key,
			"--snapshot-key", key, "--timestamp-key", key, "--root-expires", "soon"}, "--root-expires"},
		{"ceremony sign: repo missing", []string{"ceremony", "sign", "--repo", missing, "--key", key}, "--repo"},
		{"rotate: repo missing", []string{"ceremony", "rotate", "--repo", missing, "--key", key}, "--repo"},
		{"rotate: bad expiry", []string{"ceremony", "rotate", "--repo", repo, "--key", key, "--root-expires", "x"}, "--root-expires"},
		{"rotate: added key missing", []string{"ceremony", "rotate", "--repo", repo, "--key", key, "--add-root-key", "file:" + missing}, "absent"},
		{"sign: output directory missing", []string{"sign", filepath.Join(dir, "b.tar"), "--repo", repo, "--key", key, "-o", filepath.Join(missing, "a.tar")}, "--output-file"},
		{"sign: key file missing", []string{"sign", filepath.Join(dir, "b.tar"), "--repo", repo, "--key", "file:" + missing, "-o", filepath.Join(dir, "a.tar")}, "absent"},
		{"import: bundle missing", []string{"import", missing, missing, "--repo", repo, "--registry", "127.0.0.1:5000",
			"--snapshot-key", key, "--timestamp-key", key}, "BUNDLE"},
		{"import: repo missing", []string{"import", missing, missing, "--repo", missing, "--registry", "127.0.0.1:5000",
			"--snapshot-key", key, "--timestamp-key", key}, "--repo"},
		{"import: bad jobs", []string{"import", missing, missing, "--repo", repo, "--registry", "127.0.0.1:5000",
			"--snapshot-key", key, "--timestamp-key", key, "--jobs", "0"}, "--jobs"},
		{"refresh: repo missing", []string{"refresh", "--repo", missing, "--timestamp-key", key}, "--repo"},
		{"refresh: out directory missing", []string{"refresh", "--repo", repo, "--timestamp-key", key, "--out", filepath.Join(missing, "r.tar")}, "--out"},
		{"refresh: bad duration", []string{"refresh", "--repo", repo, "--timestamp-key", key, "--timestamp-expiry", "x"}, "--timestamp-expiry"},
		{"keys generate: directory missing", []string{"keys", "generate", "file:" + filepath.Join(missing, "k.key")}, "absent"},
		{"bad --output", []string{"ceremony", "sign", "--repo", repo, "--key", key, "--output", "yaml"}, "--output"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, asked := runRecording(t, tt.args...)
			if r.code == exitOK {
				t.Fatalf("accepted: %s", r.stdout)
			}
			if asked {
				t.Errorf("asked for a secret before refusing:\n%s", r.stderr)
			}
			oneLineError(t, r, tt.want)
		})
	}
}

// --output json prints one JSON object on stdout, for every command.
func TestJSONOutputIsOneObject(t *testing.T) {
	t.Setenv("PCSCLITE_CSOCK_NAME", filepath.Join(t.TempDir(), "no-pcscd"))
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	k := func(name string) string { return "file:" + filepath.Join(dir, name+".key") }
	runs := [][]string{}
	for _, name := range []string{"root", "targets", "snapshot", "timestamp"} {
		runs = append(runs, []string{"keys", "generate", k(name)})
	}
	runs = append(runs,
		[]string{"keys", "pub", k("root")},
		[]string{"keys", "list"},
		[]string{"ceremony", "init", "--repo", repo, "--root-key", k("root"), "--targets-key", k("targets"),
			"--snapshot-key", k("snapshot"), "--timestamp-key", k("timestamp")},
		[]string{"ceremony", "verify", "--repo", repo},
		[]string{"status", "--repo", repo},
		[]string{"list", "--repo", repo, "--cache", filepath.Join(dir, "cache")},
		[]string{"refresh", "--repo", repo, "--timestamp-key", k("timestamp"), "--force"},
		[]string{"inspect", filepath.Join("..", "..", "testdata", "golden", "bundle.tar")},
		[]string{"inspect", filepath.Join("..", "..", "testdata", "golden", "approval.tar")},
	)
	for _, args := range runs {
		r := coldharbor(t, pw, append(args, "--output", "json")...)
		if r.code != exitOK {
			t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			t.Errorf("%s: stdout is not a JSON object: %v\n%s", strings.Join(args[:2], " "), err, r.stdout)
			continue
		}
		if dec.More() {
			t.Errorf("%s: more than one JSON document on stdout:\n%s", strings.Join(args[:2], " "), r.stdout)
		}
	}
}
