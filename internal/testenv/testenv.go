// Package testenv finds the real tools end-to-end tests run against (the
// cosign CLI, later the registry, pcscd and SoftHSM2) and decides what a
// missing one means: a skip on a developer's machine, a failure under
// CI=true, where `make test` has installed everything.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Need skips t, or fails it in CI, because what is missing.
func Need(t testing.TB, what, how string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is missing and CI=true: %s", what, how)
	}
	t.Skipf("%s is missing: %s", what, how)
}

// Cosign returns the path of the pinned cosign CLI (COLDHARBOR_COSIGN, set
// by `make test`) and an environment for running it that reaches no network:
// cosign looks up Sigstore's public TUF repository even for offline key
// verification, so HTTPS goes to a closed loopback port and fails at once.
func Cosign(t testing.TB) (path string, env []string) {
	t.Helper()
	return cosignAt(t, "COLDHARBOR_COSIGN", "v2")
}

// Cosign3 is Cosign for the pinned cosign v3 CLI (COLDHARBOR_COSIGN3), which
// writes and reads sigstore bundles (OCI 1.1 referrers).
func Cosign3(t testing.TB) (path string, env []string) {
	t.Helper()
	return cosignAt(t, "COLDHARBOR_COSIGN3", "v3")
}

func cosignAt(t testing.TB, variable, major string) (path string, env []string) {
	t.Helper()
	path = os.Getenv(variable)
	if path == "" {
		Need(t, "the cosign "+major+" CLI", "run 'make test' (it builds the pinned cosign "+major+"), or set "+variable)
	}
	if _, err := exec.LookPath(path); err != nil {
		Need(t, "the cosign CLI at "+path, err.Error())
	}
	tufRoot := filepath.Join(t.TempDir(), "sigstore-tuf")
	env = append(os.Environ(),
		"TUF_ROOT="+tufRoot,
		"HTTPS_PROXY=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost",
	)
	return path, env
}

// Crane returns the path of the pinned crane CLI (COLDHARBOR_CRANE, set by
// `make test`), which tests use as a client independent of coldharbor.
func Crane(t testing.TB) string {
	t.Helper()
	path := os.Getenv("COLDHARBOR_CRANE")
	if path == "" {
		Need(t, "the crane CLI", "run 'make test' (it builds the pinned crane), or set COLDHARBOR_CRANE")
	}
	if _, err := exec.LookPath(path); err != nil {
		Need(t, "the crane CLI at "+path, err.Error())
	}
	return path
}

// Skopeo returns the path of Debian's skopeo, a second, independent client.
func Skopeo(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("skopeo")
	if err != nil {
		Need(t, "skopeo", "run 'make test' (make deps installs it)")
	}
	return path
}
