package testregistry_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/coldharbor/coldharbor/internal/testregistry"
)

func TestRegistry(t *testing.T) {
	r := testregistry.Start(t)
	if !strings.HasPrefix(r.Host, "127.0.0.1:") || strings.HasSuffix(r.Host, ":5000") {
		t.Fatalf("Host = %q, want a free loopback port", r.Host)
	}

	t.Run("anonymous is refused", func(t *testing.T) {
		ref, err := name.ParseReference(r.Host + "/test/missing:1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = remote.Head(ref, remote.WithTransport(r.Transport()), remote.WithContext(t.Context()))
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous HEAD: got %v, want 401 Unauthorized", err)
		}
	})

	t.Run("push and pull with credentials", func(t *testing.T) {
		img, err := random.Image(1024, 2)
		if err != nil {
			t.Fatal(err)
		}
		want, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		opts := []remote.Option{
			remote.WithAuthFromKeychain(r.Keychain()),
			remote.WithTransport(r.Transport()),
			remote.WithContext(t.Context()),
		}
		tag, err := name.NewTag(r.Host + "/test/random:1")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, img, opts...); err != nil {
			t.Fatalf("push: %v", err)
		}
		got, err := remote.Image(tag.Digest(want.String()), opts...)
		if err != nil {
			t.Fatalf("pull by digest: %v", err)
		}
		// Reading every layer proves the blobs are there, not just the manifest.
		layers, err := got.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatalf("layer: %v", err)
			}
			rc.Close()
		}
		if d, _ := got.Digest(); d != want {
			t.Fatalf("pulled digest %s, want %s", d, want)
		}
	})

	t.Run("subprocess environment", func(t *testing.T) {
		env := map[string]string{}
		for _, kv := range r.Env() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		if env["SSL_CERT_FILE"] != r.CAFile || env["DOCKER_CONFIG"] != r.DockerConfigDir {
			t.Fatalf("Env() = %q", r.Env())
		}
		data, err := os.ReadFile(filepath.Join(r.DockerConfigDir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Auths map[string]struct{ Auth string }
		}
		if err := json.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		dec, err := base64.StdEncoding.DecodeString(cfg.Auths[r.Host].Auth)
		if err != nil || string(dec) != r.User+":"+r.Password {
			t.Fatalf("config.json auth for %s = %q (%v), want the registry's credentials", r.Host, dec, err)
		}
	})
}
