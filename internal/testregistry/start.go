package testregistry

import (
	"os"
	"testing"

	"github.com/coldharbor/coldharbor/internal/testenv"
)

// Need skips t when Debian's docker-registry is not installed, or fails it
// under CI=true, where make test has installed it.
func Need(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		testenv.Need(t, "the docker-registry package", "run 'make test' (make deps installs it)")
	}
}

// Start runs a registry for the life of t in a temporary directory. It
// skips t when docker-registry is not installed (fails it under CI=true),
// and shows the registry's output only if t fails, where it helps.
func Start(t testing.TB) *Registry {
	t.Helper()
	Need(t)
	var out testenv.Output
	r, p, err := Launch(t.Context(), t.TempDir(), &out)
	if err != nil {
		t.Fatalf("start the test registry: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop the test registry: %v", err)
		}
		if t.Failed() {
			t.Logf("docker-registry on %s said:\n%s", r.Host, out.String())
		}
	})
	return r
}
