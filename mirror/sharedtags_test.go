package mirror

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/trust"
)

// manyTags tags the source's multi-arch index n times and returns the
// image names to export.
func manyTags(t *testing.T, s *setup, n int) []string {
	t.Helper()
	src, err := name.NewTag(s.srcHost + "/" + testimages.MultiArch)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(src)
	if err != nil {
		t.Fatal(err)
	}
	repo, _, _ := strings.Cut(testimages.MultiArch, ":")
	var out []string
	for i := range n {
		tag := src.Context().Tag(fmt.Sprintf("t%d", i))
		if err := remote.Tag(tag, desc); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s:t%d", repo, i))
	}
	return out
}

// TestTagsOfOneIndexShareManifests (issue 11, finding 5): many tags of one
// index hold one copy of each manifest, not one per tag.
func TestTagsOfOneIndexShareManifests(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	b, a := s.makeBundle(t, "tags", manyTags(t, s, 6)...)
	st, err := trust.LoadState(context.Background(), s.path("isolated"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := verify(context.Background(), st, b, a, s.dest, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer p.b.Close()
	first := map[string]*byte{}
	for _, ip := range p.images {
		for _, m := range ip.manifests {
			if f, ok := first[m.digest]; ok && f != &m.raw[0] {
				t.Fatalf("manifest %s is held twice (tags %s and another)", m.digest, ip.img.Name)
			}
			first[m.digest] = &m.raw[0]
		}
	}
}

// TestTagsOfOneIndexPushOnce (issue 11, finding 7): six tags of one
// multi-arch index with four jobs put each manifest once per repository —
// no concurrent PUTs of the same manifest or signature tag — and the import
// succeeds every time.
func TestTagsOfOneIndexPushOnce(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	b, a := s.makeBundle(t, "tags", manyTags(t, s, 6)...)
	var mu sync.Mutex
	puts := map[string]int{}
	s.dst.failOn = func(r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			mu.Lock()
			puts[r.URL.Path]++
			mu.Unlock()
		}
		return false
	}
	s.dst.fail.Store(true)
	o := ImportOptions{Repo: s.path("isolated"), Registry: s.dest, SnapshotKey: s.snapshot, TimestampKey: s.timestamp, Jobs: 4}
	if _, err := Import(context.Background(), b, a, o); err != nil {
		t.Fatal(err)
	}
	for path, n := range puts {
		if n > 1 {
			t.Errorf("%s was PUT %d times", path, n)
		}
	}
}
