package mirror

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/httpclient"
	"github.com/coldharbor/coldharbor/internal/testfs"
)

// faults sits between the importer and the registry, on loopback, and
// misbehaves on the requests match selects: it resets connections half way
// through a blob upload, answers 500 or 503, stalls, and lies (another
// digest, another size, a body without end). left counts the faults still
// to inject (-1: every matching request).
type faults struct {
	next  http.Handler
	mode  string
	match func(*http.Request) bool
	left  atomic.Int64

	mu        sync.Mutex
	completed map[string]int // blob uploads the registry accepted: repository path + digest
}

func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.match != nil && f.match(r) && f.left.Load() != 0 {
		f.left.Add(-1)
		if f.inject(w, r) {
			return
		}
	}
	rec := &statusRecorder{ResponseWriter: w}
	f.next.ServeHTTP(rec, r)
	if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && rec.status == http.StatusCreated {
		f.mu.Lock()
		repo, _, _ := strings.Cut(r.URL.Path, "/blobs/")
		f.completed[repo+"@"+r.URL.Query().Get("digest")]++
		f.mu.Unlock()
	}
}

// inject misbehaves; false means "pass the request on, then lie".
func (f *faults) inject(w http.ResponseWriter, r *http.Request) bool {
	switch f.mode {
	case "500", "503":
		code, _ := strconv.Atoi(f.mode)
		http.Error(w, "injected", code)
	case "reset":
		io.CopyN(io.Discard, r.Body, 512) // half way through the upload
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
	case "stall":
		select { // until the client gives up (bounded, so the server can close)
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	case "wrong-digest", "wrong-size", "endless":
		rec := &lyingWriter{ResponseWriter: w, mode: f.mode}
		f.next.ServeHTTP(rec, r)
	}
	return true
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// lyingWriter changes what the registry says about a manifest.
type lyingWriter struct {
	http.ResponseWriter
	mode string
}

func (l *lyingWriter) WriteHeader(code int) {
	h := l.Header()
	switch l.mode {
	case "wrong-digest":
		h.Set("Docker-Content-Digest", "sha256:"+strings.Repeat("ab", 32))
	case "wrong-size":
		if n, err := strconv.Atoi(h.Get("Content-Length")); err == nil {
			h.Set("Content-Length", strconv.Itoa(n+7))
		}
	case "endless":
		h.Del("Content-Length")
	}
	l.ResponseWriter.WriteHeader(code)
	if l.mode == "endless" && code == http.StatusOK {
		chunk := []byte(strings.Repeat(" ", 32<<10))
		for range 4096 { // 128 MiB, more than any manifest reader takes
			if _, err := l.ResponseWriter.Write(chunk); err != nil {
				return
			}
		}
	}
}

func (l *lyingWriter) Write(p []byte) (int, error) {
	if l.mode == "wrong-size" {
		return len(p), nil // the declared length is never met
	}
	return l.ResponseWriter.Write(p)
}

func isBlobUpload(r *http.Request) bool {
	return (r.Method == http.MethodPut || r.Method == http.MethodPatch) && strings.Contains(r.URL.Path, "/blobs/uploads/")
}

func isManifestPut(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
}

func isManifestRead(r *http.Request) bool {
	return (r.Method == http.MethodHead || r.Method == http.MethodGet) && strings.Contains(r.URL.Path, "/manifests/sha256:")
}

// TestFaultProxy: through every fault, an import either rides it out with
// retries (a transient fault) or fails cleanly (a lasting one): a plain
// error, not a refusal, nothing published; and the same import run again
// completes without uploading any blob twice.
func TestFaultProxy(t *testing.T) {
	tr, err := httpclient.New(httpclient.WithTimeouts(httpclient.Timeouts{ResponseHeader: 2 * time.Second, Idle: 2 * time.Second}), httpclient.WithoutProxy())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode  string
		match func(*http.Request) bool
	}{
		{"reset", isBlobUpload},
		{"500", isBlobUpload},
		{"503", isManifestPut},
		{"stall", isManifestPut},
		{"wrong-digest", isManifestRead},
		{"wrong-size", isManifestRead},
		{"endless", isManifestRead},
	} {
		for _, lasting := range []bool{false, true} {
			name := tc.mode + "/transient"
			if lasting {
				name = tc.mode + "/lasting"
			}
			t.Run(name, func(t *testing.T) {
				s := newSetup(t)
				f := &faults{next: s.dst.h, mode: tc.mode, match: tc.match, completed: map[string]int{}}
				s.dst.h = f
				f.left.Store(1)
				if lasting {
					f.left.Store(-1)
				}
				isolated := s.path("isolated")
				before := testfs.TreeHash(t, isolated, "lock")
				run := func() (*ImportResult, error) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					return Import(ctx, s.bundle, s.approval, ImportOptions{Repo: isolated, Registry: s.dest, SnapshotKey: s.snapshot, TimestampKey: s.timestamp, Jobs: 3,
						Remote: []remote.Option{remote.WithTransport(tr), remote.WithRetryBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Steps: 3})}})
				}
				start := time.Now()
				_, err := run()
				t.Logf("first run: %v after %s", err, time.Since(start).Round(time.Millisecond))
				// A stalled PUT is not retried (it may have been applied): it
				// fails like a lasting fault, after the header timeout.
				if !lasting && (tc.mode == "reset" || tc.mode == "500" || tc.mode == "503") && err != nil {
					t.Fatalf("a transient %s was not retried: %v", tc.mode, err)
				}
				if err != nil {
					if errors.Is(err, context.DeadlineExceeded) && time.Since(start) > 50*time.Second {
						t.Fatalf("the import hung until its deadline")
					}
					if after := testfs.TreeHash(t, isolated, "lock"); after != before {
						t.Fatal("a failed import changed the published repository")
					}
				}
				f.left.Store(0)
				if _, err := run(); err != nil {
					t.Fatalf("the same import again: %v", err)
				}
				for k, n := range f.completed {
					if n > 1 {
						t.Errorf("blob %s uploaded %d times", k, n)
					}
				}
			})
		}
	}
}
