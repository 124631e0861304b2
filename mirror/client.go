package mirror

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/coldharbor/coldharbor/internal/safefile"
	"github.com/coldharbor/coldharbor/trust"
)

// Errors that say what is missing; the CLI adds how to give it.
var (
	// ErrNoTrustedRoot: a URL source with no cached root and no bootstrap
	// root (Source.Root) has nothing to start trusting from.
	ErrNoTrustedRoot = errors.New("no trusted root yet")
	// ErrNoCache: no cache directory was given and the user has none.
	ErrNoCache = errors.New("no cache directory")
)

// Source is where a TUF client reads the repository: a directory (--repo)
// or a URL (--tuf-url). Exactly one is set.
type Source struct {
	Dir string
	URL string
	// Root bootstraps trust the first time (a root.json whose sha256 you
	// checked against the ceremony's paper record). For Dir, the
	// repository's pinned root is used when Root is empty.
	Root string
	// Cache keeps what the client has trusted, so a rollback is caught
	// across runs. Empty: $XDG_CACHE_HOME/coldharbor/tuf/<source hash>.
	Cache string
	// HTTP is the client for URL sources. Default: a client with a 30 s timeout.
	HTTP *http.Client
}

func (s Source) cacheDir() (string, error) {
	if s.Cache != "" {
		return s.Cache, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoCache, err)
	}
	id := s.URL
	if s.Dir != "" {
		abs, err := filepath.Abs(s.Dir)
		if err != nil {
			return "", err
		}
		id = "dir:" + abs
	}
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(base, "coldharbor", "tuf", hex.EncodeToString(sum[:8])), nil
}

// Refresh runs the TUF client workflow (go-tuf's updater) against the
// source and returns the updater for target look-ups. The newest trusted
// root and the last timestamp and snapshot stay in the cache.
func (s Source) Refresh() (*updater.Updater, error) {
	if (s.Dir == "") == (s.URL == "") {
		return nil, errors.New("a TUF source needs exactly one of a directory and a URL")
	}
	cache, err := s.cacheDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return nil, fmt.Errorf("creating cache %s: %w", cache, err)
	}
	root, err := s.trustedRoot(cache)
	if err != nil {
		return nil, err
	}
	metaURL, targetsURL := strings.TrimSuffix(s.URL, "/")+"/metadata", strings.TrimSuffix(s.URL, "/")+"/targets"
	client := s.HTTP
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	if s.Dir != "" {
		// The same client code reads a directory: a file transport, so
		// --repo and --tuf-url are verified identically.
		metaURL, targetsURL = "file:///"+trust.MetadataDir, "file:///"+trust.TargetsDir
		client = &http.Client{Transport: http.NewFileTransport(regularFiles{http.Dir(s.Dir)})}
	}
	cfg, err := config.New(metaURL, root)
	if err != nil {
		return nil, err
	}
	cfg.RemoteTargetsURL = targetsURL
	cfg.LocalMetadataDir = filepath.Join(cache, "metadata")
	cfg.LocalTargetsDir = filepath.Join(cache, "targets")
	if err := cfg.SetDefaultFetcherHTTPClient(client); err != nil {
		return nil, err
	}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, tufRefusal(err)
	}
	if err := up.Refresh(); err != nil {
		return nil, tufRefusal(err)
	}
	return up, nil
}

// trustedRoot is the cached root (newest trusted) or the bootstrap root.
func (s Source) trustedRoot(cache string) ([]byte, error) {
	if b, err := safefile.ReadFile(filepath.Join(cache, "metadata", "root.json"), trust.MaxRootSize); err == nil {
		return b, nil
	}
	path := s.Root
	if path == "" && s.Dir != "" {
		return trust.TrustAnchor(s.Dir)
	}
	if path == "" {
		return nil, ErrNoTrustedRoot
	}
	b, err := safefile.ReadFile(path, trust.MaxRootSize)
	if err != nil {
		return nil, fmt.Errorf("reading the bootstrap root: %w", err)
	}
	return b, nil
}

// tufRefusal maps go-tuf's verification errors to refusals (exit 3);
// download and I/O failures stay plain errors.
func tufRefusal(err error) error { return trust.AsRefusal(trust.WhatClient, err) }

// regularFiles serves only regular files (and directories) from a
// repository folder: a FIFO or device planted in metadata/ is refused
// before it is opened, so it cannot hang list or verify.
type regularFiles struct{ fs http.FileSystem }

func (r regularFiles) Open(name string) (http.File, error) {
	d, ok := r.fs.(http.Dir)
	if !ok {
		return nil, errors.New("regularFiles: not a directory")
	}
	p := filepath.Join(string(d), filepath.FromSlash(path.Clean("/"+name)))
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return r.fs.Open(name)
	}
	f, _, err := safefile.Open(p)
	if err != nil {
		return nil, err
	}
	return f, nil
}
