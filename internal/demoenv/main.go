// Command demoenv gives `make demo` two registries: a source to export
// from, holding the testimages fixture (seed 1), and an empty target to
// import into. Each is the Debian docker-registry on a loopback port, with
// TLS and htpasswd auth as a real one would have; one Docker config and one
// CA bundle serve both.
//
//	demoenv -dir DIR &
//
// It writes DIR/env.sh once the images are pushed (so a script waits for
// that file, then sources it), and runs until SIGTERM or SIGINT, when it
// stops the registry and removes DIR/env.sh. Kill DEMOENV_PID, not the PID
// of `go run`, which would leave this process behind.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/atomicfile"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testregistry"
)

func main() {
	dir := flag.String("dir", "", "directory for the registry's files and env.sh (required)")
	flag.Parse()
	if *dir == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: demoenv -dir DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dir, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "demoenv: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string, stdout io.Writer) (err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	envFile := filepath.Join(dir, "env.sh")
	// A script waits for env.sh to appear: one from an earlier run would
	// point it at a registry that is gone.
	if err := os.Remove(envFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the old env.sh: %w", err)
	}
	regDir := filepath.Join(dir, "registry")
	if err := os.MkdirAll(regDir, 0o700); err != nil {
		return fmt.Errorf("registry directory: %w", err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("registry log: %w", err)
	}
	defer logFile.Close()

	reg, proc, err := testregistry.Launch(ctx, regDir, logFile)
	if err != nil {
		return fmt.Errorf("start the source registry (log in %s): %w", logPath, err)
	}
	defer func() {
		if serr := proc.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	tgtDir := filepath.Join(dir, "target-registry")
	if err := os.MkdirAll(tgtDir, 0o700); err != nil {
		return fmt.Errorf("registry directory: %w", err)
	}
	tgt, tproc, err := testregistry.Launch(ctx, tgtDir, logFile)
	if err != nil {
		return fmt.Errorf("start the target registry (log in %s): %w", logPath, err)
	}
	defer func() {
		if serr := tproc.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	dockerConfig, caFile, err := testregistry.WriteClientConfig(dir, map[string]*testregistry.Registry{reg.Host: reg, tgt.Host: tgt})
	if err != nil {
		return err
	}

	f, err := testimages.New(1)
	if err != nil {
		return fmt.Errorf("build the demo images: %w", err)
	}
	digests, err := testimages.Push(ctx, reg.Host, f,
		remote.WithAuthFromKeychain(reg.Keychain()), remote.WithTransport(reg.Transport()))
	if err != nil {
		return fmt.Errorf("push the demo images: %w", err)
	}

	env := []struct{ name, value string }{
		{"DOCKER_CONFIG", dockerConfig},
		{"SSL_CERT_FILE", caFile},
		{"SOURCE_REGISTRY", reg.Host},
		{"TARGET_REGISTRY", tgt.Host},
		// Not REGISTRY_PID: docker-registry reads REGISTRY_* as config.
		{"SOURCE_REGISTRY_PID", strconv.Itoa(proc.Pid())},
		{"DEMOENV_PID", strconv.Itoa(os.Getpid())},
	}
	var sh strings.Builder
	sh.WriteString("# Written by internal/demoenv; valid while DEMOENV_PID runs.\n")
	for _, e := range env {
		fmt.Fprintf(&sh, "export %s=%s\n", e.name, shellQuote(e.value))
	}
	if err := atomicfile.Write(envFile, []byte(sh.String()), 0o644); err != nil {
		return fmt.Errorf("write env.sh: %w", err)
	}
	defer os.Remove(envFile)

	fmt.Fprintf(stdout, "source registry %s (pid %d), target registry %s (pid %d), environment in %s\n", reg.Host, proc.Pid(), tgt.Host, tproc.Pid(), envFile)
	for _, n := range f.Names() {
		fmt.Fprintf(stdout, "  %s/%s@%s\n", reg.Host, n, digests[n])
	}

	select {
	case <-ctx.Done():
		return nil
	case <-proc.Done():
		return fmt.Errorf("the source registry exited (log in %s)", logPath)
	case <-tproc.Done():
		return fmt.Errorf("the target registry exited (log in %s)", logPath)
	}
}

// shellQuote makes s one word for sh, whatever it holds.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
