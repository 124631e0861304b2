package gate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/internal/safefile"
	"github.com/coldharbor/coldharbor/trust"
)

// Largest files the static side passes on: metadata as a TUF client
// accepts it (trust's limits), target files up to maxTargetFile.
const maxTargetFile = 64 << 20

// metaSource is where the repository is read: a directory or a URL.
type metaSource interface {
	trust.Source
	// ReadTarget returns a target file, checked against t.
	ReadTarget(ctx context.Context, name string, t *metadata.TargetFiles) ([]byte, error)
	// open returns one file under metadata/ or targets/ (rel is
	// "metadata/…" or "targets/…", already cleaned) and its size (-1 unknown).
	open(ctx context.Context, rel string) (io.ReadCloser, int64, error)
	anchor() []byte
}

func newMetaSource(cfg Config) metaSource {
	if cfg.Repo != "" {
		return dirSource{dir: cfg.Repo}
	}
	return &urlSource{base: strings.TrimSuffix(cfg.TUFURL, "/"), client: &http.Client{Transport: cfg.Transport, Timeout: manifestTimeout}}
}

// pinned answers one role from bytes already read, the rest from src.
type pinned struct {
	trust.Source
	role string
	data []byte
}

func (p pinned) ReadMeta(role string, version int64) ([]byte, error) {
	if role == p.role && version == 0 {
		return p.data, nil
	}
	return p.Source.ReadMeta(role, version)
}

func metaLimit(role string) int64 {
	switch role {
	case trust.Root:
		return trust.MaxRootSize
	case trust.Timestamp:
		return trust.MaxTimestampSize
	case trust.Snapshot:
		return trust.MaxSnapshotSize
	}
	return trust.MaxTargetsSize
}

// targetRel is a target file's path under consistent snapshots:
// targets/<dir>/<sha256hex>.<base>.
func targetRel(name string, t *metadata.TargetFiles) string {
	d, base := path.Split(name)
	return path.Join(trust.TargetsDir, d, t.Hashes["sha256"].String()+"."+base)
}

func readTarget(ctx context.Context, s metaSource, name string, t *metadata.TargetFiles) ([]byte, error) {
	rc, _, err := s.open(ctx, targetRel(name, t))
	if err != nil {
		return nil, fmt.Errorf("reading target %s: %w", name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, t.Length+1))
	if err != nil {
		return nil, fmt.Errorf("reading target %s: %w", name, err)
	}
	if err := t.VerifyLengthHashes(data); err != nil {
		return nil, &trust.VerificationError{What: trust.Targets, Reason: fmt.Sprintf("target file %s does not match its signed length and hash", name), Err: err}
	}
	return data, nil
}

type dirSource struct{ dir string }

func (d dirSource) ReadMeta(role string, version int64) ([]byte, error) {
	return trust.DirSource(d.dir).ReadMeta(role, version)
}

func (d dirSource) ReadTarget(ctx context.Context, name string, t *metadata.TargetFiles) ([]byte, error) {
	return readTarget(ctx, d, name, t)
}

// open serves only regular files, never through a symbolic link at any
// level (a link planted as a directory under targets/ would otherwise lead
// anywhere on the host), and never anything outside metadata/ and targets/
// (private state stays private). The opened file must be the one examined.
func (d dirSource) open(_ context.Context, rel string) (io.ReadCloser, int64, error) {
	p := d.dir
	var fi os.FileInfo
	for _, part := range strings.Split(filepath.FromSlash(rel), string(filepath.Separator)) {
		if part == "" || part == "." || part == ".." {
			return nil, 0, fs.ErrNotExist
		}
		p = filepath.Join(p, part)
		var err error
		if fi, err = os.Lstat(p); err != nil {
			return nil, 0, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil, 0, fs.ErrNotExist
		}
	}
	if fi == nil || !fi.Mode().IsRegular() {
		return nil, 0, fs.ErrNotExist
	}
	f, opened, err := safefile.Open(p)
	if err != nil {
		return nil, 0, fs.ErrNotExist
	}
	if !os.SameFile(fi, opened) {
		f.Close()
		return nil, 0, fs.ErrNotExist
	}
	return f, opened.Size(), nil
}

// anchor is the repository's pinned root, or root v1 (trust.TrustAnchor).
func (d dirSource) anchor() []byte {
	b, err := trust.TrustAnchor(d.dir)
	if err != nil {
		return nil
	}
	return b
}

type urlSource struct {
	base   string
	client *http.Client
}

func (u *urlSource) ReadMeta(role string, version int64) ([]byte, error) {
	rc, _, err := u.open(context.Background(), path.Join(trust.MetadataDir, trust.FileName(role, version)))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	limit := metaLimit(role)
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", trust.FileName(role, version), err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than the %d bytes a TUF client accepts", trust.FileName(role, version), limit)
	}
	return data, nil
}

func (u *urlSource) ReadTarget(ctx context.Context, name string, t *metadata.TargetFiles) ([]byte, error) {
	return readTarget(ctx, u, name, t)
}

func (u *urlSource) open(ctx context.Context, rel string) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.base+"/"+rel, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s: %w", rel, fs.ErrNotExist)
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s: %s answered %s", rel, u.base, resp.Status)
	}
	return resp.Body, resp.ContentLength, nil
}

func (u *urlSource) anchor() []byte { return nil }

// serveStatic answers GET/HEAD /metadata/… and /targets/… from the source.
func (g *Gate) serveStatic(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	rel := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	top, file, _ := strings.Cut(rel, "/")
	if (top != trust.MetadataDir && top != trust.TargetsDir) || file == "" || strings.HasPrefix(path.Base(rel), ".") {
		http.NotFound(w, r)
		return
	}
	limit := int64(maxTargetFile)
	if top == trust.MetadataDir {
		limit = trust.MaxTargetsSize
	}
	rc, size, err := g.src.open(r.Context(), rel)
	if errors.Is(err, fs.ErrNotExist) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		g.log.Warn("static file", "path", rel, "err", err)
		http.Error(w, "the TUF repository could not be read", http.StatusBadGateway)
		return
	}
	defer rc.Close()
	if size > limit {
		http.Error(w, "file too large", http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if strings.HasSuffix(rel, ".json") {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Cache-Control", "no-cache")
	if size >= 0 {
		w.Header().Set("Content-Length", fmt.Sprint(size))
	}
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, io.LimitReader(rc, limit))
}
