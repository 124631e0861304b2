// Package depcheck enforces the dependency rules of docs/design.md in tests: which
// packages a package may (transitively) import.
package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

// Forbid fails t if pkg depends, directly or not, on any package whose
// import path starts with one of the prefixes.
func Forbid(t *testing.T, pkg string, prefixes ...string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, p := range prefixes {
			if dep == p || strings.HasPrefix(dep, p+"/") {
				t.Errorf("%s must not depend on %s (found %s)", pkg, p, dep)
			}
		}
	}
}
