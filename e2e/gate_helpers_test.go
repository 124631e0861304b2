package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testregistry"
)

// gateCert is a throwaway CA and a certificate for 127.0.0.1 signed by it,
// written as PEM files for `serve --tls-cert/--tls-key`.
type gateCert struct {
	caPEM             []byte
	certFile, keyFile string
	pool              *x509.CertPool
}

func newGateCert(t *testing.T, dir string) *gateCert {
	t.Helper()
	caPEM, certPEM, keyPEM, err := testregistry.MakeCerts()
	if err != nil {
		t.Fatal(err)
	}
	g := &gateCert{caPEM: caPEM, certFile: filepath.Join(dir, "gate.crt"), keyFile: filepath.Join(dir, "gate.key"), pool: x509.NewCertPool()}
	g.pool.AppendCertsFromPEM(caPEM)
	writeFile(t, g.certFile, certPEM)
	writeFile(t, g.keyFile, keyPEM)
	return g
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// appendCA adds PEM certificates to the CA bundle clients read (SSL_CERT_FILE).
func appendCA(t *testing.T, caFile string, pemData []byte) {
	t.Helper()
	f, err := os.OpenFile(caFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(pemData); err != nil {
		t.Fatal(err)
	}
}

// gateProc is a `coldharbor serve` started by a test.
type gateProc struct {
	host string // 127.0.0.1:PORT
	mu   sync.Mutex
	log  strings.Builder
}

func (g *gateProc) stderr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.String()
}

// startGate runs `coldharbor serve ARGS --listen 127.0.0.1:0` and returns once
// it has said where it listens; it is killed when t ends.
func startGate(t *testing.T, env []string, args ...string) *gateProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, append(append([]string{"serve"}, args...), "--listen", "127.0.0.1:0")...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gateProc{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			g.mu.Lock()
			g.log.WriteString(line + "\n")
			g.mu.Unlock()
			if _, rest, ok := strings.Cut(line, "coldharbor: serving "); ok {
				u := strings.Fields(rest)[0]
				addr <- u[strings.Index(u, "//")+2:]
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("serve %v said:\n%s", args, g.stderr())
		}
	})
	select {
	case g.host = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start:\n%s", g.stderr())
	}
	return g
}

// answer is one HTTP exchange with a gate, as a client saw it.
type answer struct {
	status int
	body   string
	digest string
}

// get sends one request to a gate and reads at most 1 MiB of the answer.
func get(t *testing.T, client *http.Client, method, url string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return answer{resp.StatusCode, strings.TrimSpace(string(body)), resp.Header.Get("Docker-Content-Digest")}
}

// wantRefused checks a 412 with an OCI DENIED body naming want, and logs the
// exact answer (the closing note lists them).
func wantRefused(t *testing.T, a answer, what, want string) {
	t.Helper()
	t.Logf("REFUSAL %s: HTTP %d %s", what, a.status, a.body)
	if a.status != http.StatusPreconditionFailed || !strings.Contains(a.body, `"code":"DENIED"`) ||
		!strings.Contains(a.body, "not signed in the coldharbor repository") || !strings.Contains(a.body, want) {
		t.Errorf("%s: got %d %s, want 412 DENIED naming %q", what, a.status, a.body, want)
	}
}

func gateClient(pool *x509.CertPool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.Proxy = nil
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// importedWorld is the pipeline up to an import into dst/mirror of the
// fixture's three images; it returns the isolated repository, the keys'
// directory and the trusted digests by target name.
func importedWorld(t *testing.T) (w *world, fix testimages.Fixture, digests map[string]string) {
	t.Helper()
	w = newWorld(t)
	fix, err := testimages.New(7)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := testimages.Push(t.Context(), w.src.Host, fix, w.srcOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(w.path("keys"), 0o700)
	for _, k := range []string{"root", "targets", "snapshot", "timestamp"} {
		must(t, w.env, "keys", "generate", "file:"+w.path("keys", k+".key"))
	}
	key := func(k string) string { return "file:" + w.path("keys", k+".key") }
	must(t, w.env, "ceremony", "init", "--repo", w.path("signer"), "--root-key", key("root"), "--targets-key", key("targets"),
		"--snapshot-key", w.path("keys", "snapshot.key.pub"), "--timestamp-key", w.path("keys", "timestamp.key.pub"))
	testfs.CopyDir(t, w.path("signer"), w.path("isolated"))
	src := func(n string) string { return w.src.Host + "/" + n }
	must(t, w.env, "export", "--repo", w.path("isolated"), "--dest", w.dst.Host+"/mirror", "-o", w.path("b.tar"),
		src(testimages.MultiArch), src(testimages.AppOne), src(testimages.AppTwo)+"=apps/two:1.0")
	must(t, w.env, "sign", w.path("b.tar"), "--repo", w.path("signer"), "--key", key("targets"), "-o", w.path("a.tar"), "--yes")
	must(t, w.env, "import", w.path("b.tar"), w.path("a.tar"), "--repo", w.path("isolated"), "--registry", w.dst.Host+"/mirror",
		"--snapshot-key", key("snapshot"), "--timestamp-key", key("timestamp"))
	digests = map[string]string{}
	for n, d := range pushed {
		digests[n] = d.String()
	}
	digests["apps/two:1.0"] = digests[testimages.AppTwo]
	return w, fix, digests
}

func (w *world) srcOpts() []remote.Option {
	return []remote.Option{remote.WithAuthFromKeychain(w.src.Keychain()), remote.WithTransport(w.src.Transport())}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
