package gate

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/coldharbor/coldharbor/internal/cosignbundle"
)

// apiOnly is an upstream that serves the referrers API and so keeps no
// fallback tag (Harbor 2.15 and later, ggcr's registry).
var apiOnly = registry.WithReferrersSupport(true)

// pushReferrer pushes img, whose subject is the trusted digest, by digest.
func (w *attachWorld) pushReferrer(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, _ := img.Digest()
	ref, err := name.NewDigest(w.host + "/mirror/app@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(w.tr)); err != nil {
		t.Fatal(err)
	}
	return d
}

func (w *attachWorld) subject(t *testing.T) v1.Descriptor {
	desc, err := partial.Descriptor(w.trusted)
	if err != nil {
		t.Fatal(err)
	}
	return *desc
}

// bundleReferrer is a sigstore-bundle signature of the trusted digest by
// key, as cosign v3 and import --signature-format bundle push it.
func (w *attachWorld) bundleReferrer(t *testing.T, key *ecdsa.PrivateKey) v1.Image {
	h := sha256.Sum256(cosignbundle.StatementPAE(w.digest.String()))
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(cosignbundle.New(w.digest.String(), "hint", sig))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer(data, cosignbundle.BundleType)})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	return mutate.Subject(img, w.subject(t)).(v1.Image)
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// On an upstream with the referrers API and no fallback tag,
// --require-signature sees a sigstore-bundle signature by a trusted key,
// and refuses a digest with none (or one by another key).
func TestGateRequireSignatureReferrersAPI(t *testing.T) {
	trusted := newKey(t)
	for _, tc := range []struct {
		name   string
		signer *ecdsa.PrivateKey
		want   int
	}{
		{"signed by the trusted key", trusted, http.StatusOK},
		{"signed by another key", newKey(t), http.StatusPreconditionFailed},
		{"unsigned", nil, http.StatusPreconditionFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newAttachWorld(t, apiOnly)
			w.st.keys = map[string]crypto.PublicKey{"k": &trusted.PublicKey}
			if tc.signer != nil {
				w.pushReferrer(t, w.bundleReferrer(t, tc.signer))
			}
			if rec := w.get("manifests", w.sigTag("")[:len(w.sigTag(""))-1]); rec.Code == http.StatusOK {
				t.Fatalf("the upstream keeps a fallback tag: %s", rec.Body)
			}
			rec := w.get("manifests", "1")
			if rec.Code != tc.want {
				t.Fatalf("app:1 with --require-signature: %d %s, want %d", rec.Code, rec.Body, tc.want)
			}
			if tc.want != http.StatusOK && !strings.Contains(rec.Body.String(), "no cosign signature upstream") {
				t.Errorf("refusal does not say why: %s", rec.Body)
			}
		})
	}
}

// referrersOf asks the gate for /v2/app/referrers/<ref><query>.
func (w *attachWorld) referrersOf(ref, query string) (*httptest.ResponseRecorder, v1.IndexManifest) {
	rec := httptest.NewRecorder()
	w.g.serveReferrers(rec, httptest.NewRequest(http.MethodGet, "/v2/app/referrers/"+ref+query, nil), w.st, "app", ref)
	var idx v1.IndexManifest
	_ = json.Unmarshal(rec.Body.Bytes(), &idx)
	return rec, idx
}

func listed(idx v1.IndexManifest, d v1.Hash) bool {
	for _, m := range idx.Manifests {
		if m.Digest == d {
			return true
		}
	}
	return false
}

// The gate's referrers API lists an admitted signature of a trusted digest
// and omits an image that names it as subject, on an upstream with the
// referrers API and on one with only the fallback tag; it filters by
// artifactType and refuses an untrusted digest.
func TestGateServesReferrers(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []registry.Option
	}{{"referrers API", []registry.Option{apiOnly}}, {"fallback tag", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newAttachWorld(t, tc.opts...)
			evil, err := random.Image(512, 1)
			if err != nil {
				t.Fatal(err)
			}
			evil = mutate.ConfigMediaType(mutate.MediaType(evil, types.OCIManifestSchema1), "application/vnd.example.sbom+json")
			ed := w.pushReferrer(t, mutate.Subject(evil, w.subject(t)).(v1.Image))
			sd := w.pushReferrer(t, w.bundleReferrer(t, newKey(t)))
			rec, idx := w.referrersOf(w.digest.String(), "")
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != string(types.OCIImageIndex) {
				t.Fatalf("referrers: %d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			if !listed(idx, sd) || listed(idx, ed) || len(idx.Manifests) != 1 {
				t.Errorf("referrers list %s, want only the signature %s (not %s)", rec.Body, sd, ed)
			}
			if idx.Manifests[0].ArtifactType != string(types.OCIConfigJSON) {
				t.Errorf("artifactType %q", idx.Manifests[0].ArtifactType)
			}
			rec, idx = w.referrersOf(w.digest.String(), "?artifactType=application/vnd.example.sbom%2Bjson")
			if rec.Code != http.StatusOK || rec.Header().Get("OCI-Filters-Applied") != "artifactType" || len(idx.Manifests) != 0 {
				t.Errorf("filtered by artifactType: %d %q %s", rec.Code, rec.Header().Get("OCI-Filters-Applied"), rec.Body)
			}
			if rec, _ := w.referrersOf(ed.String(), ""); rec.Code != http.StatusPreconditionFailed {
				t.Errorf("referrers of an untrusted digest: %d %s, want 412", rec.Code, rec.Body)
			}
		})
	}
}
