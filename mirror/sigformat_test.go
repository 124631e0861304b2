package mirror

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// fakeHarbor answers systeminfo as Harbor does: without its version to
// anonymous callers, with it to signed-in ones.
func fakeHarbor(version string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2.0/systeminfo" {
			http.NotFound(w, r)
			return
		}
		if _, _, ok := r.BasicAuth(); ok {
			w.Write([]byte(`{"auth_mode":"db_auth","harbor_version":"` + version + `","self_registration":false}`))
			return
		}
		w.Write([]byte(`{"auth_mode":"db_auth","self_registration":false}`))
	})
}

type basicKeychain struct{}

func (basicKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: "robot$mirror+importer", Password: "secret"}), nil
}

func TestChooseSignatureFormat(t *testing.T) {
	// Records whether credentials went to a registry that is not Harbor.
	var mu sync.Mutex
	var sawAuthOnAPI bool
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") && r.Header.Get("Authorization") != "" {
			mu.Lock()
			sawAuthOnAPI = true
			mu.Unlock()
		}
		if r.URL.Path == "/v2/" {
			return
		}
		http.NotFound(w, r)
	})
	for _, c := range []struct {
		name            string
		srv             http.Handler
		requested       string
		target, because string
	}{
		{"harbor 2.14", fakeHarbor("v2.14.4-79a297f7"), "", "harbor v2.14.4-79a297f7", "before 2.15 shows only legacy"},
		{"harbor 2.15", fakeHarbor("v2.15.2-080b0220"), "auto", "harbor v2.15.2-080b0220", "sigstore bundles only on digests the vendor signed"},
		{"referrers", registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))), "auto", "registry with referrers API", "sigstore bundles only on digests the vendor signed"},
		{"no referrers", plain, "auto", "registry without referrers API", "HTTP 404"},
		{"legacy asked", fakeHarbor("v2.15.2"), "legacy", "unknown", "requested"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.srv)
			defer srv.Close()
			repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/mirror/app")
			if err != nil {
				t.Fatal(err)
			}
			// The repository exists (a registry answers NAME_UNKNOWN for
			// the referrers of a new one).
			img, _ := random.Image(10, 1)
			if err := remote.Write(repo.Tag("1"), img); err != nil && c.name == "referrers" {
				t.Fatal(err)
			}
			d, err := ChooseSignatureFormat(t.Context(), c.requested, repo, nil, basicKeychain{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Chosen != SignatureFormatLegacy || d.Target != c.target || !strings.Contains(d.Reason, c.because) {
				t.Fatalf("decision %+v: want legacy for %q because %q", d, c.target, c.because)
			}
		})
	}
	if sawAuthOnAPI {
		t.Error("credentials were sent to /api/ of a registry that is not Harbor")
	}
	// Nothing listens: no error, legacy, and the reason says so.
	repo, _ := name.NewRepository("127.0.0.1:1/mirror/app")
	if d, err := ChooseSignatureFormat(t.Context(), "auto", repo, nil, nil); err != nil || d.Chosen != SignatureFormatLegacy || !strings.Contains(d.Reason, "could not ask") {
		t.Errorf("unreachable target: %+v, %v", d, err)
	}
	if d, err := ChooseSignatureFormat(t.Context(), "bundle", repo, nil, nil); err != nil || d.Chosen != SignatureFormatBundle {
		t.Errorf("bundle: %+v, %v", d, err)
	}
	if _, err := ChooseSignatureFormat(t.Context(), "sigstore", repo, nil, nil); err == nil {
		t.Error("an unknown format was accepted")
	}
}
