package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/coldharbor/coldharbor/internal/testenv"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testregistry"
)

// gateWorld is an imported repository, a gate in front of its registry,
// and what clients need to reach the gate.
type gateWorld struct {
	*world
	digests map[string]string
	cert    *gateCert
	caFile  string
	gate    *gateProc
	http    *http.Client
	crane   string
}

func newGateWorld(t *testing.T) *gateWorld {
	crane := testenv.Crane(t)
	w, _, digests := importedWorld(t)
	gw := &gateWorld{world: w, digests: digests, crane: crane}
	gw.cert = newGateCert(t, w.work)
	gw.caFile = envValue(w.env, "SSL_CERT_FILE")
	appendCA(t, gw.caFile, gw.cert.caPEM)
	gw.http = gateClient(gw.cert.pool)
	gw.gate = gw.start(t, "--repo", w.path("isolated"), "--upstream", w.dst.Host+"/mirror")
	return gw
}

func (gw *gateWorld) start(t *testing.T, args ...string) *gateProc {
	return startGate(t, gw.env, append(args, "--tls-cert", gw.cert.certFile, "--tls-key", gw.cert.keyFile, "--verbose")...)
}

func envValue(env []string, k string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, k+"="); ok {
			return v
		}
	}
	return ""
}

func (gw *gateWorld) url(g *gateProc, p string) string { return "https://" + g.host + p }

// crane runs the crane CLI with the world's Docker config and CA bundle.
func (gw *gateWorld) runCrane(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), gw.crane, args...)
	cmd.Env = append(os.Environ(), gw.env...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (gw *gateWorld) mustCrane(t *testing.T, args ...string) string {
	t.Helper()
	out, err := gw.runCrane(t, args...)
	if err != nil {
		t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestServe pulls through the gate with real clients, and shows every
// refusal the issue names with the exact answer.
func TestServe(t *testing.T) {
	gw := newGateWorld(t)
	g := gw.gate
	if a := get(t, gw.http, "GET", gw.url(g, "/readyz")); a.status != 200 {
		t.Fatalf("readyz: %d %s", a.status, a.body)
	}

	t.Run("crane pulls signed images and every platform", func(t *testing.T) { pullWithCrane(t, gw, g) })
	t.Run("skopeo pulls signed images and every platform", func(t *testing.T) { pullWithSkopeo(t, gw, g) })
	t.Run("hostile upstream", func(t *testing.T) { hostile(t, gw) })
	t.Run("referrers of a trusted digest", func(t *testing.T) { referrers(t, gw) })
	t.Run("refusals", func(t *testing.T) { refusals(t, gw, g) })
	t.Run("signature deleted upstream", func(t *testing.T) { signatureDeleted(t, gw, g) })
	t.Run("TUF client through the gate", func(t *testing.T) { tufClient(t, gw, g) })
	t.Run("replicas from --tuf-url answer alike", func(t *testing.T) { replicas(t, gw, g) })
	t.Run("expired repository", func(t *testing.T) { expired(t, gw, g) })
}

func pullWithCrane(t *testing.T, gw *gateWorld, g *gateProc) {
	for _, n := range []string{testimages.AppOne, "apps/two:1.0", testimages.MultiArch} {
		ref := g.host + "/" + n
		if d := gw.mustCrane(t, "digest", ref); d != gw.digests[n] {
			t.Errorf("%s: gate digest %s, trusted %s", n, d, gw.digests[n])
		}
		out := filepath.Join(gw.work, "crane-"+strings.NewReplacer("/", "_", ":", "_").Replace(n))
		gw.mustCrane(t, "pull", "--format=oci", ref, out)
	}
	// A containerd or CRI-O mirror keeps the upstream's path: PREFIX/NAME.
	if d := gw.mustCrane(t, "digest", g.host+"/mirror/"+testimages.AppOne); d != gw.digests[testimages.AppOne] {
		t.Errorf("through the mirror path: %s", d)
	}
	// Every platform of the index, by digest as container runtimes pull.
	raw := gw.mustCrane(t, "manifest", g.host+"/"+testimages.MultiArch)
	var idx struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(raw), &idx); err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("index through the gate: %v %s", err, raw)
	}
	for _, m := range idx.Manifests {
		repo := g.host + "/" + strings.Split(testimages.MultiArch, ":")[0]
		gw.mustCrane(t, "pull", repo+"@"+m.Digest, filepath.Join(gw.work, "crane-"+m.Platform.Architecture+".tar"))
		gw.mustCrane(t, "pull", "--platform", "linux/"+m.Platform.Architecture, g.host+"/"+testimages.MultiArch, filepath.Join(gw.work, "crane-p-"+m.Platform.Architecture+".tar"))
	}
}

func pullWithSkopeo(t *testing.T, gw *gateWorld, g *gateProc) {
	skopeo := testenv.Skopeo(t)
	certDir := filepath.Join(gw.work, "skopeo-certs")
	os.MkdirAll(certDir, 0o755)
	writeFile(t, filepath.Join(certDir, "ca.crt"), gw.cert.caPEM)
	for _, n := range []string{testimages.AppOne, testimages.MultiArch} {
		dir := filepath.Join(gw.work, "skopeo-"+strings.NewReplacer("/", "_", ":", "_").Replace(n))
		cmd := exec.CommandContext(t.Context(), skopeo, "copy", "--all", "--src-cert-dir", certDir, "--src-no-creds",
			"docker://"+g.host+"/"+n, "oci:"+dir+":x")
		cmd.Env = append(os.Environ(), gw.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy %s: %v\n%s", n, err, out)
		}
		cmd = exec.CommandContext(t.Context(), skopeo, "inspect", "--raw", "--cert-dir", certDir, "--no-creds", "docker://"+g.host+"/"+n)
		cmd.Env = append(os.Environ(), gw.env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v", n, err)
		}
		if d := sha256Hex(out); "sha256:"+d != gw.digests[n] {
			t.Errorf("skopeo got %s for %s, trusted %s", d, n, gw.digests[n])
		}
	}
}

func refusals(t *testing.T, gw *gateWorld, g *gateProc) {
	dst := gw.dst.Host + "/mirror"
	// An image pushed upstream and never signed: its tag, its digest.
	unsigned, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ud, _ := unsigned.Digest()
	for _, ref := range []string{dst + "/demo/unsigned:1", dst + "/demo/app-one:unsigned"} {
		tag, _ := name.NewTag(ref)
		if err := remote.Write(tag, unsigned, gw.ropts...); err != nil {
			t.Fatal(err)
		}
	}
	wantRefused(t, get(t, gw.http, "GET", gw.url(g, "/v2/demo/unsigned/manifests/1")), "unsigned image (unknown name)", "has no image in repository demo/unsigned")
	wantRefused(t, get(t, gw.http, "GET", gw.url(g, "/v2/demo/app-one/manifests/unsigned")), "unsigned tag of a known name", "has no target demo/app-one:unsigned")
	wantRefused(t, get(t, gw.http, "GET", gw.url(g, "/v2/demo/app-one/manifests/"+ud.String())), "digest not in TUF", "not a trusted target")
	layers, _ := unsigned.Layers()
	ld, _ := layers[0].Digest()
	wantRefused(t, get(t, gw.http, "GET", gw.url(g, "/v2/demo/app-one/blobs/"+ld.String())), "blob no trusted manifest references", "no manifest that targets")
	if a := get(t, gw.http, "DELETE", gw.url(g, "/v2/demo/app-one/manifests/1.0")); a.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE through the gate: %d %s", a.status, a.body)
	}

	// The trusted tag replaced upstream: the gate serves the trusted digest.
	tag, _ := name.NewTag(dst + "/" + testimages.AppOne)
	if err := remote.Write(tag, unsigned, gw.ropts...); err != nil {
		t.Fatal(err)
	}
	if d := gw.mustCrane(t, "digest", gw.dst.Host+"/mirror/"+testimages.AppOne); d != ud.String() {
		t.Fatalf("upstream tag not replaced: %s", d)
	}
	a := get(t, gw.http, "GET", gw.url(g, "/v2/demo/app-one/manifests/1.0"))
	t.Logf("tag replaced upstream: HTTP %d Docker-Content-Digest %s", a.status, a.digest)
	if a.status != 200 || a.digest != gw.digests[testimages.AppOne] {
		t.Errorf("tag replaced upstream: gate answered %d %s, want the trusted %s", a.status, a.digest, gw.digests[testimages.AppOne])
	}
	gw.mustCrane(t, "pull", g.host+"/"+testimages.AppOne, filepath.Join(gw.work, "after-replace.tar"))

	// ... and when upstream lost the trusted digest too: 412, never the replacement.
	two, _ := name.NewTag(dst + "/apps/two:1.0")
	if err := remote.Write(two, unsigned, gw.ropts...); err != nil {
		t.Fatal(err)
	}
	lost, _ := name.NewDigest(dst + "/apps/two@" + gw.digests["apps/two:1.0"])
	if err := remote.Delete(lost, gw.ropts...); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, get(t, gw.http, "GET", gw.url(g, "/v2/apps/two/manifests/1.0")), "tag replaced and trusted digest lost upstream", "not in the upstream registry")
	if !strings.Contains(g.stderr(), "msg=refused") || !strings.Contains(g.stderr(), "name=demo/unsigned") {
		t.Errorf("--verbose logged no refusal line:\n%s", g.stderr())
	}
}

// signatureDeleted: TUF alone is enough to pull; --require-signature also
// needs the cosign signature upstream.
func signatureDeleted(t *testing.T, gw *gateWorld, g *gateProc) {
	d := gw.digests[testimages.MultiArch]
	sigTag, _ := name.NewTag(gw.dst.Host + "/mirror/demo/multiarch:sha256-" + strings.TrimPrefix(d, "sha256:") + ".sig")
	desc, err := remote.Head(sigTag, gw.ropts...)
	if err != nil {
		t.Fatalf("the import pushed no signature: %v", err)
	}
	strict := gw.start(t, "--repo", gw.path("isolated"), "--upstream", gw.dst.Host+"/mirror", "--require-signature")
	if got := gw.mustCrane(t, "digest", strict.host+"/"+testimages.MultiArch); got != d {
		t.Fatalf("--require-signature with the signature present: %s", got)
	}
	if err := remote.Delete(sigTag.Context().Digest(desc.Digest.String()), gw.ropts...); err != nil {
		t.Fatal(err)
	}
	gw.mustCrane(t, "pull", "--format=oci", g.host+"/"+testimages.MultiArch, filepath.Join(gw.work, "nosig"))
	fresh := gw.start(t, "--repo", gw.path("isolated"), "--upstream", gw.dst.Host+"/mirror", "--require-signature")
	wantRefused(t, get(t, gw.http, "GET", gw.url(fresh, "/v2/demo/multiarch/manifests/1.0")), "signature deleted upstream, --require-signature", "no cosign signature upstream")
}

// tufClient: go-tuf's updater, not our code, refreshes through the gate.
func tufClient(t *testing.T, gw *gateWorld, g *gateProc) {
	root, err := os.ReadFile(gw.path("isolated", "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.New(gw.url(g, "/metadata"), root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RemoteTargetsURL = gw.url(g, "/targets")
	cfg.LocalMetadataDir = filepath.Join(gw.work, "tuf-client", "metadata")
	cfg.LocalTargetsDir = filepath.Join(gw.work, "tuf-client", "targets")
	os.MkdirAll(cfg.LocalMetadataDir, 0o700)
	os.MkdirAll(cfg.LocalTargetsDir, 0o700)
	if err := cfg.SetDefaultFetcherHTTPClient(gw.http); err != nil {
		t.Fatal(err)
	}
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("go-tuf refresh through the gate: %v", err)
	}
	ti, err := up.GetTargetInfo(testimages.AppOne)
	if err != nil {
		t.Fatal(err)
	}
	if _, data, err := up.DownloadTarget(ti, "", ""); err != nil || "sha256:"+sha256Hex(data) != gw.digests[testimages.AppOne] {
		t.Fatalf("target through the gate: %v", err)
	}
	if a := get(t, gw.http, "GET", gw.url(g, "/.coldharbor/trusted-root.json")); a.status != 404 {
		t.Errorf("private state served: %d", a.status)
	}
	must(t, append(gw.env, "SSL_CERT_FILE="+gw.caFile), "list", "--tuf-url", gw.url(g, ""), "--root", gw.path("isolated", "metadata", "1.root.json"), "--cache", filepath.Join(gw.work, "list-cache"))
}

// replicas: a gate reading the repository over HTTP (as replicas behind a
// load balancer do) answers what the directory gate answers.
func replicas(t *testing.T, gw *gateWorld, g *gateProc) {
	r := gw.start(t, "--tuf-url", gw.url(g, ""), "--root", gw.path("isolated", "metadata", "1.root.json"), "--upstream", gw.dst.Host+"/mirror")
	for _, p := range []string{"/v2/demo/multiarch/manifests/1.0", "/v2/demo/app-one/manifests/1.0", "/v2/apps/two/manifests/1.0",
		"/v2/demo/unsigned/manifests/1", "/v2/demo/app-one/tags/list", "/metadata/timestamp.json"} {
		a, b := get(t, gw.http, "GET", gw.url(g, p)), get(t, gw.http, "GET", gw.url(r, p))
		if a != b {
			t.Errorf("%s: --repo gate %d %s %.200s; --tuf-url gate %d %s %.200s", p, a.status, a.digest, a.body, b.status, b.digest, b.body)
		}
	}
}

// expired: a timestamp that runs out makes the gate refuse everything,
// saying how to refresh; a refresh brings it back without a restart.
func expired(t *testing.T, gw *gateWorld, g *gateProc) {
	// A replica reading the repository over HTTP, checking every 500 ms.
	r := gw.start(t, "--tuf-url", gw.url(g, ""), "--root", gw.path("isolated", "metadata", "1.root.json"),
		"--upstream", gw.dst.Host+"/mirror", "--interval", "500ms")
	ts := "file:" + gw.path("keys", "timestamp.key")
	if res := run(t, gw.env, "refresh", "--repo", gw.path("isolated"), "--timestamp-key", ts, "--timestamp-expiry", "3s", "--force"); res.code != 0 && res.code != 4 {
		t.Fatalf("refresh: %d %s", res.code, res.stderr)
	}
	for _, gp := range []*gateProc{g, r} {
		a := waitReadyz(t, gw, gp, http.StatusServiceUnavailable)
		t.Logf("readyz once expired: HTTP %d %s", a.status, a.body)
		if !strings.Contains(a.body, "expired") {
			t.Errorf("readyz after expiry: %d %s", a.status, a.body)
		}
		wantRefused(t, get(t, gw.http, "GET", gw.url(gp, "/v2/demo/app-one/manifests/1.0")), "expired repository", "coldharbor refresh")
	}
	must(t, gw.env, "refresh", "--repo", gw.path("isolated"), "--timestamp-key", ts, "--force")
	for _, gp := range []*gateProc{g, r} {
		waitReadyz(t, gw, gp, http.StatusOK)
		if d := gw.mustCrane(t, "digest", gp.host+"/"+testimages.AppOne); d != gw.digests[testimages.AppOne] {
			t.Errorf("after refresh: %s", d)
		}
	}
}

// waitReadyz polls a gate's /readyz (bounded) until it answers status.
func waitReadyz(t *testing.T, gw *gateWorld, g *gateProc, status int) answer {
	t.Helper()
	var a answer
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if a = get(t, gw.http, "GET", gw.url(g, "/readyz")); a.status == status {
			return a
		}
	}
	t.Fatalf("readyz of %s: %d %s, want %d", g.host, a.status, a.body, status)
	return a
}

// hostileUpstream is a TLS relay to the real registry that lies where told:
// a manifest that does not hash to its digest, a manifest and a blob that
// never end. It counts what it sent of the endless answers.
type hostileUpstream struct {
	srv                     *httptest.Server
	badManifest, endlessMan string // request paths answered with lies
	endlessBlob             string
	sent                    atomic.Int64
}

func newHostileUpstream(t *testing.T, w *world) *hostileUpstream {
	h := &hostileUpstream{}
	target, _ := url.Parse("https://" + w.dst.Host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = w.dst.Transport()
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case h.badManifest:
			rw.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			rw.Write([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`))
		case h.endlessMan, h.endlessBlob:
			rw.Header().Set("Content-Type", "application/octet-stream")
			chunk := bytes.Repeat([]byte("{"), 32<<10)
			for r.Context().Err() == nil {
				n, err := rw.Write(chunk)
				h.sent.Add(int64(n))
				if err != nil || h.sent.Load() > 1<<30 {
					return
				}
			}
		default:
			r.Host = target.Host
			proxy.ServeHTTP(rw, r)
		}
	}))
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

// hostile: the gate refuses what does not hash, and reads no more of an
// endless answer than the size it expects.
func hostile(t *testing.T, gw *gateWorld) {
	h := newHostileUpstream(t, gw.world)
	host := strings.TrimPrefix(h.srv.URL, "https://")
	dir := filepath.Join(gw.work, "hostile")
	cfgDir, caFile, err := testregistry.WriteClientConfig(dir, map[string]*testregistry.Registry{host: gw.dst})
	if err != nil {
		t.Fatal(err)
	}
	appendCA(t, caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw}))
	appendCA(t, caFile, gw.cert.caPEM)
	repo := func(n string) string { return "/v2/mirror/" + strings.Split(n, ":")[0] }
	h.badManifest = repo(testimages.AppOne) + "/manifests/" + gw.digests[testimages.AppOne]
	h.endlessMan = repo(testimages.MultiArch) + "/manifests/" + gw.digests[testimages.MultiArch]
	raw := gw.mustCrane(t, "manifest", gw.gate.host+"/apps/two:1.0@"+gw.digests["apps/two:1.0"])
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(raw), &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("apps/two manifest: %v", err)
	}
	layer := m.Layers[len(m.Layers)-1]
	h.endlessBlob = repo("apps/two") + "/blobs/" + layer.Digest
	env := append(slices.Clone(gw.env), "DOCKER_CONFIG="+cfgDir, "SSL_CERT_FILE="+caFile)
	g := startGate(t, env, "--repo", gw.path("isolated"), "--upstream", host+"/mirror", "--tls-cert", gw.cert.certFile, "--tls-key", gw.cert.keyFile, "--verbose")

	wantRefused(t, get(t, gw.http, "GET", gw.url(g, "/v2/demo/app-one/manifests/1.0")), "upstream manifest not hashing to its digest", "for the trusted digest")
	wantRefused(t, get(t, gw.http, "GET", gw.url(g, "/v2/demo/multiarch/manifests/1.0")), "upstream manifest that never ends", "answered more than")
	if s := h.sent.Load(); s > 8<<20 {
		t.Errorf("the gate let an endless manifest send %d bytes", s)
	}
	h.sent.Store(0)
	// The gate cuts the transfer: before the headers when the blob is
	// small (they are still buffered), or part way through the body.
	var n int64
	resp, err := gw.http.Get(gw.url(g, "/v2/apps/two/blobs/"+layer.Digest))
	if err == nil {
		n, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	t.Logf("endless blob upstream: client got %d of %d bytes then %v; upstream sent %d", n, layer.Size, err, h.sent.Load())
	if err == nil || n >= layer.Size {
		t.Errorf("an endless upstream blob reached the client whole: %d bytes, err %v", n, err)
	}
	if s := h.sent.Load(); s > layer.Size+16<<20 {
		t.Errorf("the gate read %d bytes of an endless blob of %d", s, layer.Size)
	}
}

// referrers: OCI 1.1 referrers of a trusted digest, kept upstream under
// the referrers tag scheme (sha256-<hex>, distribution has no referrers
// API). A sigstore bundle signature is served through the gate with its
// blobs, and listed by the gate's referrers API; an image pushed upstream with the trusted digest as its subject,
// which the signed target does not list, is refused: otherwise anyone who
// can push upstream could make any image pullable by digest.
func referrers(t *testing.T, gw *gateWorld) {
	d := gw.digests[testimages.AppOne]
	subject, err := remote.Head(mustDigest(t, gw.dst.Host+"/mirror/demo/app-one@"+d), gw.ropts...)
	if err != nil {
		t.Fatal(err)
	}
	evil, err := random.Image(300, 1)
	if err != nil {
		t.Fatal(err)
	}
	evil = mutate.ConfigMediaType(mutate.MediaType(evil, types.OCIManifestSchema1), "application/vnd.example.sbom+json")
	evil = mutate.Subject(evil, *subject).(v1.Image)
	bundleType := types.MediaType("application/vnd.dev.sigstore.bundle.v0.3+json")
	sig, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer([]byte(`{"mediaType":"`+string(bundleType)+`"}`), bundleType)})
	if err != nil {
		t.Fatal(err)
	}
	sig = mutate.Subject(mutate.MediaType(sig, types.OCIManifestSchema1), *subject).(v1.Image)
	for _, img := range []v1.Image{evil, sig} {
		id, _ := img.Digest()
		if err := remote.Write(mustDigest(t, gw.dst.Host+"/mirror/demo/app-one@"+id.String()), img, gw.ropts...); err != nil {
			t.Fatal(err)
		}
	}
	ed, _ := evil.Digest()
	sd, _ := sig.Digest()
	g := gw.start(t, "--repo", gw.path("isolated"), "--upstream", gw.dst.Host+"/mirror")
	idx := gw.mustCrane(t, "manifest", g.host+"/demo/app-one:sha256-"+strings.TrimPrefix(d, "sha256:"))
	if !strings.Contains(idx, sd.String()) {
		t.Fatalf("the referrers tag through the gate does not list %s:\n%s", sd, idx)
	}
	gw.mustCrane(t, "pull", g.host+"/demo/app-one@"+sd.String(), filepath.Join(gw.work, "referrer.tar"))
	if a := get(t, gw.http, "GET", gw.url(g, "/v2/demo/app-one/referrers/"+d)); a.status != 200 || !strings.Contains(a.body, sd.String()) || strings.Contains(a.body, ed.String()) {
		t.Errorf("the referrers API through the gate: %d %s, want %s listed and not %s", a.status, a.body, sd, ed)
	}
	wantRefused(t, get(t, gw.http, "GET", gw.url(g, "/v2/demo/app-one/manifests/"+ed.String())), "an unlisted image referrer of a trusted digest", "is not a trusted target")
	if out, err := gw.runCrane(t, "pull", g.host+"/demo/app-one@"+ed.String(), filepath.Join(gw.work, "evil.tar")); err == nil {
		t.Errorf("crane pulled an image referrer the signed target does not list: %s", out)
	}
}

func mustDigest(t *testing.T, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
