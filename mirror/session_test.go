package mirror

import (
	"net/http"
	"sync"
	"testing"
)

// TestOneSessionPerRepository: an import authorises once per repository
// and role (one pusher, one puller for the whole run), not at every
// request: the /v2/ pings do not grow with images, manifests or blobs.
func TestOneSessionPerRepository(t *testing.T) {
	s := newSetup(t)
	var mu sync.Mutex
	counts := map[string]int{}
	s.dst.failOn = func(r *http.Request) bool { // counts, never fails
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/v2/" {
			counts["ping"]++
		}
		counts["all"]++
		return false
	}
	s.dst.fail.Store(true)
	res, err := s.importOnce()
	if err != nil {
		t.Fatal(err)
	}
	// Three images in three repositories; a pusher and a puller (read-back)
	// each ping once per repository, and the signature format is asked once.
	repos := 3
	t.Logf("import of %d images, %d manifests, %d blobs: %d requests, %d pings", len(res.Images), res.Manifests, res.BlobsPushed+res.BlobsSkipped+res.BlobsMounted, counts["all"], counts["ping"])
	if counts["ping"] > 2*repos+1 {
		t.Errorf("%d /v2/ pings for %d repositories: want at most %d (one session per repository and role)", counts["ping"], repos, 2*repos+1)
	}
}
