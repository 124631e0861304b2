package bundle_test

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/bundle/export"
)

// failBlob makes the source registry fail one blob download, as an outage
// in the middle of an export would.
type failBlob struct {
	rt     http.RoundTripper
	digest string
}

func (f failBlob) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+f.digest) {
		return &http.Response{StatusCode: http.StatusInternalServerError, Body: io.NopCloser(strings.NewReader("outage")), Request: r, Header: http.Header{}}, nil
	}
	return f.rt.RoundTrip(r)
}

// Blobs are fetched ahead into temporary files; the bundle is the same
// whatever the parallelism, and a failed fetch leaves no file behind.
func TestExportPrefetch(t *testing.T) {
	w := newWorld(t)
	_, one := w.export(t, withJobs(w.exportOptions(), 1))
	_, many := w.export(t, withJobs(w.exportOptions(), 8))
	if one.IndexSHA256 != many.IndexSHA256 || one.Bytes != many.Bytes {
		t.Fatalf("jobs=1 and jobs=8 give different bundles: %s %s", one.IndexSHA256, many.IndexSHA256)
	}
	tmp := t.TempDir()
	o := w.exportOptions()
	o.TempDir, o.Jobs = tmp, 3
	o.Remote = []remote.Option{remote.WithTransport(failBlob{http.DefaultTransport, w.fix.SharedBase.String()}),
		remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	if _, err := export.Write(w.ctx, io.Discard, o); err == nil {
		t.Fatal("export succeeded through a failing blob")
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("a failed export left %d temporary files", len(entries))
	}
}

func withJobs(o export.Options, jobs int) export.Options {
	o.Jobs = jobs
	return o
}
