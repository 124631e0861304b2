package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Only `keys simulate` may use the software YubiKey: no other file of the
// command imports it, so no signing path can reach it. (The libraries'
// own dependency tests forbid it outright.)
func TestOnlySimulateImportsPivsim(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "simulate.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"github.com/coldharbor/coldharbor/hsm/pivsim"`) {
			t.Errorf("%s imports hsm/pivsim: only simulate.go may", f)
		}
	}
}
