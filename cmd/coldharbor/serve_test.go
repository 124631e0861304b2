package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/urfave/cli/v2"
)

// The Kubernetes example must not drift from the flags: every --flag its
// containers pass is a flag of serve or refresh.
func TestServeExampleFlags(t *testing.T) {
	data, err := os.ReadFile("../../examples/kubernetes/serve.yaml")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, c := range []*cli.Command{serveCommand(env{}), refreshCommand(env{})} {
		for _, f := range c.Flags {
			for _, n := range f.Names() {
				known[n] = true
			}
		}
	}
	flags := regexp.MustCompile(`(?m)^\s*#?\s*- --([a-z-]+)`).FindAllSubmatch(data, -1)
	if len(flags) < 8 {
		t.Fatalf("found only %d flags in serve.yaml", len(flags))
	}
	for _, m := range flags {
		if !known[string(m[1])] {
			t.Errorf("serve.yaml passes --%s, which neither serve nor refresh has", m[1])
		}
	}
}

func TestServeUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--upstream", "r.internal"},
		{"serve", "--repo", "x"},
		{"serve", "--repo", "x", "--tuf-url", "https://t", "--upstream", "r"},
		{"serve", "--tuf-url", "https://t", "--upstream", "r"},
		{"serve", "--repo", "x", "--upstream", "r", "--tls-cert", "c"},
	} {
		r := coldharbor(t, nil, args...)
		if r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, r.code, exitUsage, r.stderr)
		}
		oneLineError(t, r, "")
	}
}
