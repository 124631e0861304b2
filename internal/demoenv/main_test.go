package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testregistry"
)

// `make demo` depends on this flow: env.sh appears once the images are in
// the registry, and goes away with the registry when the program is stopped.
func TestRun(t *testing.T) {
	testregistry.Need(t)
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env.sh")
	if err := os.WriteFile(envFile, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out strings.Builder // read only after run returns
	done := make(chan error, 1)
	go func() { done <- run(ctx, dir, &out) }()

	env := waitForEnv(t, envFile, done)
	for _, k := range []string{"DOCKER_CONFIG", "SSL_CERT_FILE", "SOURCE_REGISTRY", "SOURCE_REGISTRY_PID", "DEMOENV_PID"} {
		if env[k] == "" {
			t.Errorf("env.sh lacks %s: %v", k, env)
		}
	}
	if !strings.HasPrefix(env["SOURCE_REGISTRY"], "127.0.0.1:") {
		t.Errorf("SOURCE_REGISTRY = %q, want a loopback address", env["SOURCE_REGISTRY"])
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	for _, n := range []string{testimages.AppOne, testimages.AppTwo, testimages.MultiArch} {
		if !strings.Contains(out.String(), env["SOURCE_REGISTRY"]+"/"+n+"@sha256:") {
			t.Errorf("output lacks %s:\n%s", n, out.String())
		}
	}
	if _, err := os.Stat(envFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("env.sh left behind after stop: %v", err)
	}
}

// waitForEnv waits for envFile to hold run's environment and returns it as
// sh sees it, by sourcing it.
func waitForEnv(t *testing.T, envFile string, done <-chan error) map[string]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(envFile)
		if err == nil && string(data) != "stale" {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before writing env.sh: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("env.sh did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := exec.Command("sh", "-c", `. "$1" && env`, "sh", envFile).Output()
	if err != nil {
		t.Fatalf("source env.sh: %v", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestShellQuote(t *testing.T) {
	tests := []string{"plain", "/tmp/a b", "it's", `$HOME "x" \n`, ""}
	for _, s := range tests {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil {
			t.Fatalf("sh: %v", err)
		}
		if string(out) != s {
			t.Errorf("shellQuote(%q) reads back as %q", s, out)
		}
	}
}
