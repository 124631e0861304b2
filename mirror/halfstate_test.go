package mirror

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/trust"
)

// countWrites makes the destination registry count the requests that
// would change it (and fail none of them).
func (s *setup) countWrites() *atomic.Int64 {
	var n atomic.Int64
	s.dst.failOn = func(r *http.Request) bool {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			n.Add(1)
		}
		return false
	}
	s.dst.fail.Store(true)
	return &n
}

// TestPlantedFilesRefusedBeforeAnyPush (issue 11, finding 2): a file
// planted where the next targets or snapshot version goes, or a link under
// targets/, is found before the first request that changes the registry;
// the published repository is left as it was.
func TestPlantedFilesRefusedBeforeAnyPush(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, isolated string)
		want  string
	}{
		{"next targets over 5 MB", func(t *testing.T, d string) {
			plantFile(t, filepath.Join(d, "metadata", "2.targets.json"), make([]byte, 6<<20))
		}, "2.targets.json"},
		{"next targets a directory", func(t *testing.T, d string) {
			if err := os.Mkdir(filepath.Join(d, "metadata", "2.targets.json"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "2.targets.json"},
		{"next targets a sparse 4 GiB file", func(t *testing.T, d string) {
			f, err := os.Create(filepath.Join(d, "metadata", "2.targets.json"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(4 << 30); err != nil {
				t.Fatal(err)
			}
		}, "2.targets.json"},
		{"next targets a FIFO", func(t *testing.T, d string) {
			if err := syscall.Mkfifo(filepath.Join(d, "metadata", "2.targets.json"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "2.targets.json"},
		{"next snapshot a directory", func(t *testing.T, d string) {
			if err := os.Mkdir(filepath.Join(d, "metadata", "1.snapshot.json"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "1.snapshot.json"},
		{"timestamp a directory", func(t *testing.T, d string) {
			if err := os.Mkdir(filepath.Join(d, "metadata", "timestamp.json"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "timestamp.json"},
		{"a link under targets/", func(t *testing.T, d string) {
			elsewhere := t.TempDir()
			if err := os.MkdirAll(filepath.Join(d, "targets"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(elsewhere, filepath.Join(d, "targets", "demo")); err != nil {
				t.Fatal(err)
			}
		}, "targets/demo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t)
			isolated := s.path("isolated")
			tc.plant(t, isolated)
			before := testfs.TreeHash(t, isolated, "lock")
			writes := s.countWrites()
			done := make(chan error, 1)
			go func() { _, err := s.importOnce(); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				unblockFIFO(filepath.Join(isolated, "metadata", "2.targets.json"))
				t.Fatal("import hung")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("import: %v, want an error naming %s", err, tc.want)
			}
			if n := writes.Load(); n != 0 {
				t.Fatalf("%d requests changed the registry before the refusal: %v", n, err)
			}
			if after := testfs.TreeHash(t, isolated, "lock"); after != before {
				t.Fatal("the published repository changed")
			}
		})
	}
}

// TestFIFOInMetadataDoesNotHang (issue 11, finding 3): a FIFO in metadata/
// makes import, refresh and list refuse at once instead of hanging while
// holding the repository lock.
func TestFIFOInMetadataDoesNotHang(t *testing.T) {
	for _, file := range []string{"timestamp.json", "1.snapshot.json", "2.targets.json"} {
		t.Run(file, func(t *testing.T) {
			s := newSetup(t)
			if _, err := s.importOnce(); err != nil {
				t.Fatal(err)
			}
			b2, a2 := s.makeBundle(t, "b2", testimages.AppOne)
			isolated := s.path("isolated")
			fifo := filepath.Join(isolated, "metadata", file)
			if err := os.Remove(fifo); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unblockFIFO(fifo) })
			ctx := context.Background()
			for name, run := range map[string]func() error{
				"import": func() error { _, err := s.importPair(b2, a2); return err },
				"refresh": func() error {
					_, err := trust.Refresh(ctx, isolated, trust.RefreshOptions{Timestamp: s.timestamp.Signer, Snapshot: s.snapshot.Signer, Force: true, Publish: true})
					return err
				},
				"list": func() error { _, err := List(ctx, Source{Dir: isolated, Cache: t.TempDir()}); return err },
			} {
				done := make(chan error, 1)
				go func() { done <- run() }()
				select {
				case err := <-done:
					if err == nil {
						t.Fatalf("%s succeeded over a FIFO", name)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s hung on a FIFO at metadata/%s", name, file)
				}
			}
		})
	}
}

func plantFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// unblockFIFO releases a reader stuck opening a FIFO, so a failed test
// does not leave it behind.
func unblockFIFO(path string) {
	for range 20 {
		f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return
		}
		f.Close()
		time.Sleep(10 * time.Millisecond)
	}
}
