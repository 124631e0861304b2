package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/bundle"
)

// throughGate runs `coldharbor serve --require-signature` in front of the
// Harbor project, with the robot's credentials, and pulls as in front of
// the distribution registry: every image by tag (the trusted digest) and
// every platform by digest, with crane; an image pushed around the import
// is refused with 412 DENIED.
func (w *harborWorld) throughGate(t *testing.T, head *bundle.Head) {
	t.Helper()
	cert := newGateCert(t, w.work)
	appendCA(t, envValue(w.env, "SSL_CERT_FILE"), cert.caPEM)
	g := startGate(t, w.env, "--repo", w.path("isolated"), "--upstream", w.dest, "--require-signature",
		"--tls-cert", cert.certFile, "--tls-key", cert.keyFile, "--verbose")
	for _, img := range head.Index.Images {
		repo, _, _ := strings.Cut(img.Name, ":")
		if out, err := w.crane(t, "digest", g.host+"/"+img.Name); err != nil || strings.TrimSpace(out) != img.Digest {
			t.Errorf("crane digest %s through the gate in front of Harbor %s: %v %s, want %s", img.Name, w.h.Version, err, out, img.Digest)
		}
		for _, sd := range img.SignedDigests() {
			args := []string{"pull", g.host + "/" + repo + "@" + sd.Digest, filepath.Join(w.work, "gate-pull.tar")}
			if sd.Digest == img.Digest && len(img.Children) > 0 {
				args = []string{"manifest", g.host + "/" + repo + "@" + sd.Digest}
			}
			if out, err := w.crane(t, args...); err != nil {
				t.Errorf("crane %s through the gate in front of Harbor %s: %v\n%s", strings.Join(args[:2], " "), w.h.Version, err, out)
			}
		}
	}
	a := get(t, gateClient(cert.pool), "GET", "https://"+g.host+"/v2/app/unsigned/manifests/1")
	wantRefused(t, a, "Harbor "+w.h.Version+": image pushed around the import", "has no image in repository app/unsigned")
}
