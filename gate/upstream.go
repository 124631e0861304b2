package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// upstream reads manifests and blobs from the upstream registry, with its
// credentials, one authenticated transport per repository.
type upstream struct {
	reg    name.Registry
	prefix string
	cfg    Config

	mu    sync.Mutex
	trans map[string]http.RoundTripper // by upstream repository
}

func newUpstream(reg name.Registry, prefix string, cfg Config) *upstream {
	return &upstream{reg: reg, prefix: prefix, cfg: cfg, trans: map[string]http.RoundTripper{}}
}

// repository is the upstream repository for a name clients use.
func (u *upstream) repository(repo string) string {
	if u.prefix == "" {
		return repo
	}
	return u.prefix + "/" + repo
}

// errNotFound: upstream has no such manifest or blob.
var errNotFound = errors.New("not found in the upstream registry")

// digestError: upstream answered bytes that are not what was asked for.
type digestError struct {
	want, got string
}

func (e *digestError) Error() string {
	return fmt.Sprintf("the upstream registry answered %s for %s", e.got, e.want)
}

// sizeError: upstream answered more than what was asked for can be.
type sizeError struct {
	what  string
	limit int64
}

func (e *sizeError) Error() string {
	return fmt.Sprintf("the upstream registry answered more than the %d bytes %s can be: refused", e.limit, e.what)
}

func (u *upstream) client(ctx context.Context, repo string) (http.RoundTripper, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.trans[repo]; ok {
		return t, nil
	}
	r := u.reg.Repo(u.repository(repo))
	auth, err := u.cfg.Keychain.Resolve(r)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", u.reg, err)
	}
	base := u.cfg.Transport
	if u.cfg.UserAgent != "" {
		base = transport.NewUserAgent(base, u.cfg.UserAgent)
	}
	t, err := transport.NewWithContext(ctx, u.reg, auth, base, []string{r.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", u.reg, err)
	}
	if len(u.trans) >= maxRepos {
		clear(u.trans)
	}
	u.trans[repo] = t
	return t, nil
}

// get sends GET or HEAD for /v2/<repo>/<kind>/<ref> upstream.
func (u *upstream) get(ctx context.Context, method, repo, kind, ref string, accept []string) (*http.Response, error) {
	t, err := u.client(ctx, repo)
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("https://%s/v2/%s/%s/%s", u.reg.RegistryStr(), path.Clean(u.repository(repo)), kind, ref)
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s upstream: %w", kind, ref, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("%s@%s: %w", u.repository(repo), ref, errNotFound)
	}
	resp.Body.Close()
	return nil, fmt.Errorf("%s %s/%s upstream: %s", kind, u.repository(repo), ref, resp.Status)
}

// manifest is a manifest read from upstream and hashed.
type manifest struct {
	raw       []byte
	digest    v1.Hash
	mediaType string
}

// manifestAccept: every manifest type clients pull and cosign writes.
var manifestAccept = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// fetchManifest reads a manifest by digest (want set; at most size bytes,
// or maxManifestSize when size is 0) and refuses bytes that do not hash to
// it; by tag (want zero) it reads at most maxManifestSize and hashes them.
func (u *upstream) fetchManifest(ctx context.Context, repo, ref string, want v1.Hash, size int64) (*manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, manifestTimeout)
	defer cancel()
	limit := int64(maxManifestSize)
	if size > 0 && size < limit {
		limit = size
	}
	if want != (v1.Hash{}) {
		ref = want.String()
	}
	resp, err := u.get(ctx, http.MethodGet, repo, "manifests", ref, manifestAccept)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	what := fmt.Sprintf("manifest %s of %s", ref, repo)
	if resp.ContentLength > limit {
		return nil, &sizeError{what: what, limit: limit}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s of %s upstream: %w", ref, repo, err)
	}
	if int64(len(raw)) > limit {
		return nil, &sizeError{what: what, limit: limit}
	}
	sum := sha256.Sum256(raw)
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if want != (v1.Hash{}) && got != want {
		return nil, &digestError{want: want.String(), got: got.String()}
	}
	mt := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	return &manifest{raw: raw, digest: got, mediaType: strings.TrimSpace(mt)}, nil
}
