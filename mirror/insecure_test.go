package mirror

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/internal/httpclient"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

// aliasTransport is the production transport whose dialer sends every
// connection to name (HOST:PORT) to the loopback address addr: a registry
// reached under a name that is neither loopback nor RFC 1918, for which
// go-containerregistry never tries plain HTTP by itself.
func aliasTransport(t *testing.T, alias, addr string, insecure ...string) http.RoundTripper {
	t.Helper()
	var d net.Dialer
	tr, err := httpclient.New(httpclient.WithoutProxy(), httpclient.WithInsecureHosts(insecure...),
		httpclient.WithDialContext(func(ctx context.Context, network, a string) (net.Conn, error) {
			if a != alias {
				t.Errorf("dial to %s, want only %s", a, alias)
			}
			return d.DialContext(ctx, network, addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestImportInsecureRegistryByName: a plain-HTTP registry under a
// non-loopback, non-private name (registry.example:PORT) is refused with
// an error naming --insecure-registry; named in InsecureRegistries (and
// allowed by the transport) the import pushes there over plain HTTP.
func TestImportInsecureRegistryByName(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil { // b1, over loopback
		t.Fatal(err)
	}
	addr, _, _ := strings.Cut(s.dest, "/")
	_, port, _ := net.SplitHostPort(addr)
	alias := "registry.example:" + port
	s.dest = alias + "/mirror"
	s.bundle, s.approval = s.makeBundle(t, "b-alias", testimages.AppOne)

	o := s.importOptions()
	o.Remote = append(o.Remote, remote.WithTransport(aliasTransport(t, alias, addr)))
	_, err := Import(context.Background(), s.bundle, s.approval, o)
	if err == nil || !strings.Contains(err.Error(), "--insecure-registry "+alias) {
		t.Fatalf("import without --insecure-registry: %v, want a refusal naming --insecure-registry %s", err, alias)
	}

	o = s.importOptions()
	tr := aliasTransport(t, alias, addr, alias)
	o.Remote, o.Transport, o.InsecureRegistries = append(o.Remote, remote.WithTransport(tr)), tr, []string{alias}
	if _, err := Import(context.Background(), s.bundle, s.approval, o); err != nil {
		t.Fatalf("import with --insecure-registry %s: %v", alias, err)
	}

}

// TestVerifyInsecureRegistryByName: verify of an image in a plain-HTTP
// registry under a non-loopback, non-private name works only with the
// host in InsecureRegistries, and otherwise names --insecure-registry.
func TestVerifyInsecureRegistryByName(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	addr, _, _ := strings.Cut(s.dest, "/")
	_, port, _ := net.SplitHostPort(addr)
	alias := "registry.example:" + port
	image := alias + "/mirror/" + testimages.AppOne
	src := Source{Dir: s.path("isolated"), Cache: t.TempDir()}
	o := VerifyOptions{Registry: alias + "/mirror", Remote: []remote.Option{remote.WithTransport(aliasTransport(t, alias, addr))}}
	if _, err := VerifyImages(context.Background(), src, []string{image}, o); err == nil || !strings.Contains(err.Error(), "--insecure-registry "+alias) {
		t.Fatalf("verify without --insecure-registry: %v, want a refusal naming --insecure-registry %s", err, alias)
	}
	o.Remote, o.InsecureRegistries = []remote.Option{remote.WithTransport(aliasTransport(t, alias, addr, alias))}, []string{alias}
	if _, err := VerifyImages(context.Background(), src, []string{image}, o); err != nil {
		t.Fatalf("verify with --insecure-registry %s: %v", alias, err)
	}
}

// TestExportInsecureSourceByName: export from a plain-HTTP source registry
// under a non-loopback, non-private name works only with the host in
// InsecureRegistries, and otherwise names --insecure-registry.
func TestExportInsecureSourceByName(t *testing.T) {
	s := newSetup(t)
	_, port, _ := net.SplitHostPort(s.srcHost)
	alias := "registry.example:" + port
	o := export.Options{Repo: s.signer, Destination: s.dest, Images: []export.ImageSpec{{Source: alias + "/" + testimages.AppOne}},
		Remote: []remote.Option{remote.WithTransport(aliasTransport(t, alias, s.srcHost))}}
	if _, err := export.Write(context.Background(), io.Discard, o); err == nil || !strings.Contains(err.Error(), "--insecure-registry "+alias) {
		t.Fatalf("export without --insecure-registry: %v, want a refusal naming --insecure-registry %s", err, alias)
	}
	o.Remote, o.InsecureRegistries = []remote.Option{remote.WithTransport(aliasTransport(t, alias, s.srcHost, alias))}, []string{alias}
	if _, err := export.Write(context.Background(), io.Discard, o); err != nil {
		t.Fatalf("export with --insecure-registry %s: %v", alias, err)
	}
}
