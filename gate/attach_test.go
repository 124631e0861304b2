package gate

import (
	"bytes"
	"encoding/base64"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
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
)

// attachWorld is a gate (no TUF) in front of an in-process TLS registry
// holding one trusted image, app:1, under the upstream prefix "mirror".
type attachWorld struct {
	g       *Gate
	st      *state
	host    string
	tr      http.RoundTripper
	trusted v1.Image
	digest  v1.Hash
}

func newAttachWorld(t *testing.T, opts ...registry.Option) *attachWorld {
	opts = append([]registry.Option{registry.Logger(log.New(io.Discard, "", 0))}, opts...)
	srv := httptest.NewTLSServer(registry.New(opts...))
	t.Cleanup(srv.Close)
	w := &attachWorld{host: strings.TrimPrefix(srv.URL, "https://"), tr: srv.Client().Transport}
	reg, err := name.NewRegistry(w.host)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Keychain: authn.NewMultiKeychain(), Transport: w.tr, Now: time.Now, Logger: slog.New(slog.DiscardHandler)}
	w.g = &Gate{cfg: cfg, log: cfg.Logger, up: newUpstream(reg, "mirror", cfg)}
	if w.trusted, err = random.Image(512, 2); err != nil {
		t.Fatal(err)
	}
	w.push(t, "1", w.trusted)
	w.digest, _ = w.trusted.Digest()
	raw, _ := w.trusted.RawManifest()
	tg := target{name: "app:1", digest: w.digest, size: int64(len(raw))}
	w.st = &state{targetsVer: 3, repos: map[string]map[string]target{"app": {"1": tg}}, closures: map[string]*closure{}}
	return w
}

func (w *attachWorld) push(t *testing.T, tag string, img v1.Image) {
	t.Helper()
	ref, err := name.NewTag(w.host + "/mirror/app:" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(w.tr)); err != nil {
		t.Fatal(err)
	}
}

func (w *attachWorld) sigTag(suffix string) string { return "sha256-" + w.digest.Hex + "." + suffix }

// get asks the gate for /v2/app/<kind>/<ref>.
func (w *attachWorld) get(kind, ref string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v2/app/"+kind+"/"+ref, nil)
	if kind == "manifests" {
		w.g.serveManifest(rec, req, w.st, "app", ref)
	} else {
		w.g.serveBlob(rec, req, w.st, "app", ref)
	}
	return rec
}

// signatureImage is a cosign signature manifest whose one simple-signing
// layer holds payload.
func signatureImage(t *testing.T, payload []byte) v1.Image {
	l := static.NewLayer(payload, types.MediaType(simpleSigningMediaType))
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: l,
		Annotations: map[string]string{signatureAnnotation: base64.StdEncoding.EncodeToString([]byte("sig"))}})
	if err != nil {
		t.Fatal(err)
	}
	return mutate.MediaType(mutate.ConfigMediaType(img, types.OCIConfigJSON), types.OCIManifestSchema1)
}

// An image pushed upstream under a cosign tag of a trusted digest is not a
// signature: the gate must serve neither it nor its layers, by tag or by
// digest, or any upstream writer could make any image pullable.
func TestGateAttachmentIsNotAnImage(t *testing.T) {
	w := newAttachWorld(t)
	evil, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	w.push(t, w.sigTag("sig"), evil)
	w.push(t, w.sigTag("sbom"), evil)
	ed, _ := evil.Digest()
	layers, _ := evil.Layers()
	ld, _ := layers[0].Digest()
	for _, tc := range []struct{ kind, ref string }{
		{"manifests", ed.String()},
		{"manifests", w.sigTag("sig")},
		{"manifests", w.sigTag("sbom")},
		{"blobs", ld.String()},
	} {
		if rec := w.get(tc.kind, tc.ref); rec.Code != http.StatusPreconditionFailed {
			t.Errorf("%s %s: %d %s, want 412", tc.kind, tc.ref, rec.Code, rec.Body)
		}
	}
	if rec := w.get("manifests", "1"); rec.Code != http.StatusOK {
		t.Fatalf("trusted app:1: %d %s", rec.Code, rec.Body)
	}
}

// A real cosign signature is still served (cosign verify through the gate),
// its payload only as the JSON it is; a signature manifest whose layer is
// not JSON (an archive labelled as a payload) is refused at the blob.
func TestGateSignatureServedAsJSONOnly(t *testing.T) {
	w := newAttachWorld(t)
	payload := []byte(`{"critical":{"image":{"docker-manifest-digest":"` + w.digest.String() + `"}}}`)
	sig := signatureImage(t, payload)
	w.push(t, w.sigTag("sig"), sig)
	if rec := w.get("manifests", w.sigTag("sig")); rec.Code != http.StatusOK {
		t.Fatalf("signature by tag: %d %s", rec.Code, rec.Body)
	}
	if rec := w.get("blobs", hashOf(payload).String()); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), payload) {
		t.Fatalf("payload: %d %s", rec.Code, rec.Body)
	}
	archive := []byte("\x1f\x8b\x08\x00 not json, a layer")
	w.push(t, w.sigTag("sig"), signatureImage(t, archive))
	w.st.closures = map[string]*closure{}
	if rec := w.get("blobs", hashOf(archive).String()); rec.Code != http.StatusPreconditionFailed || !strings.Contains(rec.Body.String(), "not the JSON") {
		t.Fatalf("non-JSON payload: %d %s, want 412", rec.Code, rec.Body)
	}
}

// A signature manifest naming a trusted layer's digest with another size
// must not change the size the trusted layer is served with.
func TestGateSignatureCannotResizeTrustedBlob(t *testing.T) {
	w := newAttachWorld(t)
	layers, _ := w.trusted.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	m, _ := signatureImage(t, []byte(`{}`)).Manifest()
	m.Layers[0].Digest, m.Layers[0].Size = ld, 7
	c := &closure{manifests: map[v1.Hash]allowed{}, blobs: map[v1.Hash]int64{ld: size}, sigBlobs: map[v1.Hash]int64{}}
	b := &builder{c: c}
	p := &parsed{Config: &descriptor{Digest: m.Config.Digest, Size: m.Config.Size}, Layers: []descriptor{{MediaType: simpleSigningMediaType, Digest: ld, Size: 7}}}
	if err := b.addSignature(hashOf([]byte("x")), allowed{attachment: true}, p); err != nil {
		t.Fatal(err)
	}
	if got, small, ok := c.blob(ld); !ok || small || got != size {
		t.Fatalf("trusted layer: size %d small %v ok %v, want %d false true", got, small, ok, size)
	}
}

// An attachment the signed target lists (custom.attachments) is served
// whole, whatever it holds.
func TestGateListedAttachmentServed(t *testing.T) {
	w := newAttachWorld(t)
	sbom, err := random.Image(300, 1)
	if err != nil {
		t.Fatal(err)
	}
	w.push(t, w.sigTag("sbom"), sbom)
	sd, _ := sbom.Digest()
	raw, _ := sbom.RawManifest()
	tg := w.st.repos["app"]["1"]
	tg.attached = map[v1.Hash]int64{sd: int64(len(raw))}
	w.st.repos["app"]["1"] = tg
	layers, _ := sbom.Layers()
	ld, _ := layers[0].Digest()
	for _, ref := range []string{sd.String(), w.sigTag("sbom")} {
		if rec := w.get("manifests", ref); rec.Code != http.StatusOK {
			t.Errorf("listed attachment %s: %d %s", ref, rec.Code, rec.Body)
		}
	}
	if rec := w.get("blobs", ld.String()); rec.Code != http.StatusOK {
		t.Errorf("listed attachment's layer: %d %s", rec.Code, rec.Body)
	}
}

// An image that names a trusted digest as its subject (an OCI 1.1
// referrer, kept under the fallback tag sha256-<hex>) is refused unless the
// signed target lists it; a sigstore bundle signature referrer is served.
func TestGateReferrerIsNotAnImage(t *testing.T) {
	w := newAttachWorld(t)
	desc, err := partial.Descriptor(w.trusted)
	if err != nil {
		t.Fatal(err)
	}
	evil, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	evil = mutate.Subject(mutate.MediaType(evil, types.OCIManifestSchema1), *desc).(v1.Image)
	bundleJSON := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)
	sig, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer(bundleJSON, "application/vnd.dev.sigstore.bundle.v0.3+json")})
	if err != nil {
		t.Fatal(err)
	}
	sig = mutate.Subject(mutate.MediaType(sig, types.OCIManifestSchema1), *desc).(v1.Image)
	for _, img := range []v1.Image{evil, sig} {
		d, _ := img.Digest()
		ref, _ := name.NewDigest(w.host + "/mirror/app@" + d.String())
		if err := remote.Write(ref, img, remote.WithTransport(w.tr)); err != nil {
			t.Fatal(err)
		}
	}
	ed, _ := evil.Digest()
	layers, _ := evil.Layers()
	ld, _ := layers[0].Digest()
	for _, tc := range []struct{ kind, ref string }{{"manifests", ed.String()}, {"blobs", ld.String()}} {
		if rec := w.get(tc.kind, tc.ref); rec.Code != http.StatusPreconditionFailed {
			t.Errorf("unlisted image referrer: %s %s: %d %s, want 412", tc.kind, tc.ref, rec.Code, rec.Body)
		}
	}
	sd, _ := sig.Digest()
	if rec := w.get("manifests", sd.String()); rec.Code != http.StatusOK {
		t.Errorf("sigstore bundle referrer: %d %s", rec.Code, rec.Body)
	}
	if rec := w.get("blobs", hashOf(bundleJSON).String()); rec.Code != http.StatusOK {
		t.Errorf("sigstore bundle referrer's layer: %d %s", rec.Code, rec.Body)
	}
	if rec := w.get("manifests", w.sigTag("")[:len(w.sigTag(""))-1]); rec.Code != http.StatusOK {
		t.Errorf("the referrers tag: %d %s", rec.Code, rec.Body)
	}
}
