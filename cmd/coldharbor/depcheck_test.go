package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
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

// The binary links no test code: not the testing package, nor any of the
// test harnesses (the software YubiKey's pcscd plumbing lives in
// hsm/pivsim/pivsimtest for this reason; keys simulate uses hsm/pivsim only).
func TestBinaryLinksNoTestCode(t *testing.T) {
	const mod = "github.com/coldharbor/coldharbor/"
	depcheck.Forbid(t, mod+"cmd/coldharbor",
		"testing",
		mod+"hsm/pivsim/pivsimtest",
		mod+"internal/depcheck",
		mod+"internal/testenv",
		mod+"internal/testfs",
		mod+"internal/testharbor",
		mod+"internal/testhsm",
		mod+"internal/testimages",
		mod+"internal/testkeys",
		mod+"internal/testregistry",
	)
}
