package mirror

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/trust"
)

// TestRerunCompletedImport (issue 11, finding 8): the same import run again
// after it completed is not an attack: it succeeds with AlreadyImported,
// puts back a tag and a signature deleted from the registry meanwhile, and
// publishes nothing.
func TestRerunCompletedImport(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	isolated := s.path("isolated")
	before := testfs.TreeHash(t, isolated, "lock")
	// The registry lost a tag and a signature (a cleanup job, a restore).
	repo, _ := name.NewRepository(s.dest + "/demo/app-one")
	tags, err := remote.List(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags {
		deleteTag(t, s, repo.Tag(tag))
	}
	res, err := s.importOnce()
	if err != nil {
		t.Fatalf("rerun of a completed import: %v", err)
	}
	if !res.AlreadyImported || res.TargetsVersion != 2 {
		t.Fatalf("rerun result %+v, want AlreadyImported at targets v2", res)
	}
	if after := testfs.TreeHash(t, isolated, "lock"); after != before {
		t.Fatal("a rerun changed the published repository")
	}
	if got, err := remote.List(repo); err != nil || len(got) != len(tags) {
		t.Fatalf("tags after the rerun: %v %v, want %v", got, err, tags)
	}
}

func deleteTag(t *testing.T, s *setup, ref name.Tag) {
	t.Helper()
	d, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	// ggcr's in-memory registry deletes by tag or digest alike.
	if err := remote.Delete(ref); err != nil {
		t.Fatalf("deleting %s (%s): %v", ref, d.Digest, err)
	}
}

// TestRefreshDuringLongImport (issue 11, finding 4): the repository lock is
// not held while blobs upload, so a refresh goes through during a long
// import, and the import then publishes above the refreshed timestamp.
func TestRefreshDuringLongImport(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	b2, a2 := s.makeBundle(t, "b2", testimages.AppOne)
	isolated := s.path("isolated")
	// Slow every write to the registry: the import spends seconds pushing.
	stall := make(chan struct{})
	s.dst.failOn = func(r *http.Request) bool {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			<-stall
		}
		return false
	}
	s.dst.fail.Store(true)
	done := make(chan error, 1)
	go func() { _, err := s.importPair(b2, a2); done <- err }()
	time.Sleep(500 * time.Millisecond) // the import is now pushing
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := trust.Refresh(ctx, isolated, trust.RefreshOptions{Timestamp: s.timestamp.Signer, Snapshot: s.snapshot.Signer, Force: true, Publish: true})
	close(stall)
	if err != nil {
		t.Fatalf("refresh during an import: %v", err)
	}
	if err := <-done; err != nil && !strings.Contains(err.Error(), "already") {
		t.Fatalf("import after a refresh meanwhile: %v", err)
	}
	v, err := trust.Verify(context.Background(), isolated, trust.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Targets.Signed.Version != 3 || v.Timestamp.Signed.Version != 3 {
		t.Fatalf("targets v%d timestamp v%d, want 3 and 3", v.Targets.Signed.Version, v.Timestamp.Signed.Version)
	}
}
