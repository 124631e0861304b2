// Package gate is `coldharbor serve`: one HTTP handler that serves a TUF
// repository as static files and a read-only OCI distribution API in front
// of an upstream registry, answering only what the TUF repository trusts.
//
// Tags are resolved through TUF, never through the registry: a manifest
// asked for by tag is the manifest whose digest the trusted target names,
// fetched from upstream by digest and hashed before a byte is sent. A digest
// is answered only when it is a trusted target, a manifest one of them
// references (index children), or an attachment of one (cosign tag or
// referrer) that the signed target lists or that is a signature manifest;
// a blob only when such a manifest references it, streamed with its size
// and digest checked (a blob only a signature manifest references goes out
// only as whole-checked small JSON, never as a layer). Everything else is refused with 412 and an OCI error body naming
// why.
//
// The gate holds no state but caches: every replica started from the same
// repository answers the same.
package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/coldharbor/coldharbor/internal/httpclient"
	"github.com/coldharbor/coldharbor/internal/regsession"
)

// Config says what the gate serves and from where.
type Config struct {
	// Repo is a TUF repository directory; TUFURL a URL serving metadata/ and
	// targets/. Exactly one is set.
	Repo   string
	TUFURL string
	// Root is the trusted root.json to verify from. Required with TUFURL;
	// with Repo, empty means the repository's pinned root.
	Root []byte
	// Upstream is the registry the images are in, HOST[/PREFIX]: target
	// "app:1" is HOST/PREFIX/app:1 there.
	Upstream string
	// Keychain gives the upstream's credentials. Default: the Docker config.
	Keychain authn.Keychain
	// Transport reaches the upstream registry and TUFURL. Default:
	// internal/httpclient's, with the gate's timeouts (Timeouts).
	Transport http.RoundTripper
	// InsecureRegistries are the hosts ("host" or "host:port") named with
	// --insecure-registry: an Upstream there is parsed with name.Insecure so
	// go-containerregistry tries plain HTTP (Transport must allow it; the
	// default transport is given them).
	InsecureRegistries []string
	// RequireSignature also requires a cosign signature by a key of the
	// trusted cosign.pub target over each trusted digest, in the upstream.
	RequireSignature bool
	// Interval is how often the gate checks for a new timestamp.json.
	// Default: 2 s for Repo, 1 min for TUFURL.
	Interval time.Duration
	// Logger receives refusals (Info) and reloads. Default: discard.
	Logger *slog.Logger
	// UserAgent is sent upstream.
	UserAgent string
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Limits that bound what an upstream or a client can make the gate do.
const (
	// maxManifestSize is the largest manifest the gate reads (the
	// distribution registry's own limit is 4 MiB).
	maxManifestSize = 4 << 20
	// manifestTimeout bounds one manifest fetch from upstream.
	manifestTimeout = 30 * time.Second
	// closureTTL is how long a repository's allowed digests (and, with
	// RequireSignature, its signature checks) are reused before they are
	// looked up upstream again; a digest missing from them is looked up at
	// once (closureRetry), so this bounds only how long a signature deleted
	// upstream still counts.
	closureTTL = 2 * time.Minute
	// closureRetry: a blob refused from a closure older than this rebuilds
	// it once (a signature pushed since).
	closureRetry = 2 * time.Second
	// maxRepos bounds how many repositories' closures are kept.
	maxRepos = 1024
)

// Timeouts are the gate's bounds on each upstream connection: shorter than
// a batch command's, since a client is waiting on the other side.
func Timeouts() httpclient.Timeouts {
	return httpclient.Timeouts{Dial: 10 * time.Second, TLSHandshake: 10 * time.Second, ResponseHeader: 30 * time.Second, Idle: 2 * time.Minute}
}

// Gate is the handler and its trusted state. Create it with New.
type Gate struct {
	cfg      Config
	log      *slog.Logger
	src      metaSource
	up       *upstream
	mux      *http.ServeMux
	state    atomic.Pointer[state]
	failure  atomic.Pointer[loadFailure] // the last reload that did not verify
	reloadMu sync.Mutex
}

type loadFailure struct {
	err       error
	when      time.Time
	timestamp []byte // the timestamp.json that did not verify, if read
}

// New checks cfg and loads the repository once. A repository that does not
// verify is not an error here: the gate starts not ready and refuses every
// pull, saying why, until a later reload verifies (Watch).
func New(ctx context.Context, cfg Config) (*Gate, error) {
	if (cfg.Repo == "") == (cfg.TUFURL == "") {
		return nil, errors.New("give exactly one of a repository directory or a TUF URL")
	}
	if cfg.TUFURL != "" && len(cfg.Root) == 0 {
		return nil, errors.New("a TUF URL needs a trusted root.json (--root): the gate trusts nothing it fetched first")
	}
	host, prefix, _ := strings.Cut(strings.Trim(cfg.Upstream, "/"), "/")
	reg, err := name.NewRegistry(host, regsession.NameOptions(cfg.InsecureRegistries, host, name.StrictValidation)...)
	if err != nil || host == "" {
		return nil, fmt.Errorf("upstream %q: want HOST[/PREFIX]: %v", cfg.Upstream, err)
	}
	if cfg.Keychain == nil {
		cfg.Keychain = authn.DefaultKeychain
	}
	if cfg.Transport == nil {
		if cfg.Transport, err = httpclient.New(httpclient.WithTimeouts(Timeouts()), httpclient.WithInsecureHosts(cfg.InsecureRegistries...)); err != nil {
			return nil, err
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
		if cfg.TUFURL != "" {
			cfg.Interval = time.Minute
		}
	}
	g := &Gate{cfg: cfg, log: cfg.Logger}
	g.src = newMetaSource(cfg)
	g.up = newUpstream(reg, prefix, cfg)
	g.mux = g.routes()
	if err := g.Reload(ctx); err != nil {
		g.log.Warn("the repository does not verify; refusing every pull until it does", "err", err)
	}
	return g, nil
}

// Handler serves /v2/, /metadata/, /targets/, /healthz and /readyz.
func (g *Gate) Handler() http.Handler { return g.mux }

// Watch reloads the repository whenever timestamp.json changes (checked
// every Interval) until ctx ends, keeping the last verified state when a
// new one does not verify.
func (g *Gate) Watch(ctx context.Context) {
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := g.Reload(ctx); err != nil {
				g.log.Warn("reload refused; still serving the last verified state", "err", err)
			}
		}
	}
}

// Ready reports whether the gate serves: the state verified and is unexpired.
// The error says why not and what to do.
func (g *Gate) Ready() error {
	_, err := g.current()
	return err
}

// current returns the state to answer from, or the refusal that applies to
// every request.
func (g *Gate) current() (*state, error) {
	st := g.state.Load()
	if st == nil {
		f := g.failure.Load()
		if f == nil {
			return nil, errors.New("the coldharbor repository has not been loaded yet")
		}
		return nil, fmt.Errorf("the coldharbor repository does not verify (%v): %s", f.err, g.howToFix())
	}
	if now := g.cfg.Now(); !now.Before(st.expires) {
		return nil, fmt.Errorf("the coldharbor repository expired: %s expired at %s: %s",
			st.expiresRole, st.expires.UTC().Format(time.RFC3339), g.howToFix())
	}
	return st, nil
}

func (g *Gate) howToFix() string {
	if g.cfg.Repo != "" {
		return fmt.Sprintf("run 'coldharbor refresh --repo %s' (or check the refresh job); the gate reloads timestamp.json by itself", g.cfg.Repo)
	}
	return fmt.Sprintf("run 'coldharbor refresh' on the repository served at %s (or check the refresh job); the gate reloads it every %s", g.cfg.TUFURL, g.cfg.Interval)
}
