package gate

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/httpclient"
)

// TestUpstreamInsecureRegistryByName: an upstream in a plain-HTTP
// registry under a non-loopback, non-private name (registry.example:PORT,
// dialled to a loopback test server) is parsed for plain HTTP only when
// named in InsecureRegistries, and then the gate serves from it; otherwise
// the failure names --insecure-registry.
func TestUpstreamInsecureRegistryByName(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := net.SplitHostPort(addr)
	alias := "registry.example:" + port
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(addr + "/mirror/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	for _, insecure := range [][]string{nil, {alias}} {
		tr, err := httpclient.New(httpclient.WithoutProxy(), httpclient.WithInsecureHosts(insecure...), httpclient.WithDialContext(dial))
		if err != nil {
			t.Fatal(err)
		}
		g, err := New(context.Background(), Config{Repo: t.TempDir(), Upstream: alias + "/mirror", Transport: tr, InsecureRegistries: insecure})
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool]string{false: "https", true: "http"}[insecure != nil]
		if got := g.up.reg.Scheme(); got != want {
			t.Fatalf("insecure %v: upstream scheme %s, want %s", insecure, got, want)
		}
		digest, _ := img.Digest()
		raw, _ := img.RawManifest()
		tg := target{name: "app:1", digest: digest, size: int64(len(raw))}
		st := &state{targetsVer: 3, repos: map[string]map[string]target{"app": {"1": tg}}, closures: map[string]*closure{}}
		rec := httptest.NewRecorder()
		g.serveManifest(rec, httptest.NewRequest(http.MethodGet, "/v2/app/manifests/1", nil), st, "app", "1")
		if ok := rec.Code == http.StatusOK; ok != (insecure != nil) || (!ok && !strings.Contains(rec.Body.String(), "--insecure-registry "+alias)) {
			t.Errorf("insecure %v: %d %s", insecure, rec.Code, rec.Body)
		}
	}
}
