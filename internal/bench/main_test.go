package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coldharbor/coldharbor/internal/testregistry"
)

// TestQuick runs the whole bench with -quick's sizes: registries, workload,
// ceremony, every step and the report. crane is optional for the test
// suite: `make bench` builds it and sets COLDHARBOR_CRANE; without it the
// test skips, in CI too.
func TestQuick(t *testing.T) {
	testregistry.Need(t)
	crane := os.Getenv("COLDHARBOR_CRANE")
	if crane == "" {
		t.Skip("crane is optional for the tests: set COLDHARBOR_CRANE to a crane binary to run the bench smoke test " +
			"('make bench' builds the pinned one in ~/.cache/coldharbor/tools/crane-v0.22.1/crane)")
	}
	if _, err := exec.LookPath(crane); err != nil {
		t.Skipf("COLDHARBOR_CRANE=%s is not runnable (%v): the bench smoke test needs crane", crane, err)
	}
	bin := filepath.Join(t.TempDir(), "coldharbor")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/coldharbor/coldharbor/cmd/coldharbor").CombinedOutput(); err != nil {
		t.Fatalf("go build coldharbor: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var out, log bytes.Buffer
	o := options{coldharbor: bin, crane: crane, seed: 1, out: &out, log: &log}
	o.quickSizes()
	start := time.Now()
	if err := run(ctx, o); err != nil {
		t.Fatalf("bench -quick: %v\nits log:\n%s", err, log.String())
	}
	t.Logf("bench -quick took %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	for _, want := range []string{"a. copy into an empty target", "coldharbor import", "b. pull to a local artefact",
		"c. copy again, blobs present", "0 blobs pushed", "d. pull through serve", "of direct (goal >= 90%)", "summary:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
