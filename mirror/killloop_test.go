package mirror

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

const killPassword = "kill loop"

// TestKillLoopChild is the import the kill loop runs in a child process
// (and kills); it does nothing in a normal test run.
func TestKillLoopChild(t *testing.T) {
	env := os.Getenv("COLDHARBOR_KILL_CHILD")
	if env == "" {
		t.Skip("run by TestKillLoop")
	}
	f := strings.Split(env, "\n") // bundle, approval, repo, registry, snapshot key, timestamp key
	ctx := context.Background()
	if n, err := strconv.ParseUint(os.Getenv("COLDHARBOR_FSIZE"), 10, 64); err == nil {
		// A full disk, as the kernel reports it: writes past n bytes fail
		// with EFBIG (Go ignores SIGXFSZ).
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []*hsm.Key
	for _, uri := range f[4:6] {
		k, err := hsm.Open(ctx, uri, hsm.WithSecrets(hsm.StaticSecret(killPassword)))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if _, err := Import(ctx, f[0], f[1], ImportOptions{Repo: f[2], Registry: f[3], SnapshotKey: keys[0], TimestampKey: keys[1], Jobs: 2}); err != nil {
		t.Fatal(err)
	}
}

// killPoint is where a child is killed: at the n-th request that changes
// the registry (blob uploads, manifests, tags, signatures), or delay after
// the last registry request (publishing).
type killPoint struct {
	write int
	delay time.Duration
}

// TestKillLoop (issue 11): an import killed with SIGKILL at points spread
// over blob upload, manifest, tag and signature push and publish leaves a
// repository that go-tuf's updater accepts, wholly old or wholly new, and
// the same import run again completes.
func TestKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("kill loop: not in -short")
	}
	keys, uris := killKeys(t)
	writes := calibrate(t, keys, uris)
	var points []killPoint
	for n := 1; n <= writes; n += max(1, writes/16) {
		points = append(points, killPoint{write: n})
	}
	for _, d := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond} {
		points = append(points, killPoint{delay: d})
	}
	if len(points) < 20 {
		t.Fatalf("only %d kill points", len(points))
	}
	t.Logf("%d kill points over %d registry writes and publishing", len(points), writes)
	for _, kp := range points {
		name := fmt.Sprintf("write-%d", kp.write)
		if kp.write == 0 {
			name = fmt.Sprintf("publish+%s", kp.delay)
		}
		t.Run(name, func(t *testing.T) { killOnce(t, keys, uris, kp) })
	}
}

// killSetup is a repository with one import done (the old state) and a
// second bundle to import (the new state).
func killSetup(t *testing.T, keys []*hsm.Key) (*setup, string, string) {
	s := newSetupKeys(t, false, keys[0], keys[1])
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	b2, a2 := s.makeBundle(t, "b2", testimages.AppOne, testimages.AppTwo, testimages.MultiArch)
	// An empty registry at the same address, so that the import under test
	// uploads every blob again.
	s.dst.h = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	return s, b2, a2
}

func childImport(s *setup, b, a string, uris []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillLoopChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "COLDHARBOR_KILL_CHILD="+strings.Join([]string{b, a, s.path("isolated"), s.dest, uris[0], uris[1]}, "\n"))
	return cmd
}

// calibrate counts the registry writes of one whole import.
func calibrate(t *testing.T, keys []*hsm.Key, uris []string) int {
	s, b2, a2 := killSetup(t, keys)
	var n atomic.Int64
	s.dst.failOn = func(r *http.Request) bool {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			n.Add(1)
		}
		return false
	}
	s.dst.fail.Store(true)
	if out, err := childImport(s, b2, a2, uris).CombinedOutput(); err != nil {
		t.Fatalf("calibration import: %v\n%s", err, out)
	}
	return int(n.Load())
}

func killOnce(t *testing.T, keys []*hsm.Key, uris []string, kp killPoint) {
	s, b2, a2 := killSetup(t, keys)
	cmd := childImport(s, b2, a2, uris)
	var once sync.Once
	kill := func() { once.Do(func() { cmd.Process.Signal(syscall.SIGKILL) }) }
	var writes atomic.Int64
	var last atomic.Int64
	s.dst.failOn = func(r *http.Request) bool {
		last.Store(time.Now().UnixNano())
		if r.Method != http.MethodGet && r.Method != http.MethodHead && int(writes.Add(1)) == kp.write {
			kill()
			return true // the request dies with the process
		}
		return false
	}
	s.dst.fail.Store(true)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if kp.write == 0 {
		// Publishing follows the last registry request (the read-back).
		go func() {
			for {
				time.Sleep(200 * time.Microsecond)
				if l := last.Load(); l != 0 && time.Since(time.Unix(0, l)) >= 2*time.Millisecond+kp.delay {
					kill()
					return
				}
			}
		}()
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		kill()
		t.Fatal("the child import did not end")
	}
	kill()
	s.dst.fail.Store(false)
	v := clientTargetsVersion(t, s)
	if v != 2 && v != 3 {
		t.Fatalf("after the kill a client sees targets v%d", v)
	}
	t.Logf("killed: a client sees targets v%d (2 old, 3 new)", v)
	if out, err := childImport(s, b2, a2, uris).CombinedOutput(); err != nil {
		t.Fatalf("the same import after the kill: %v\n%s", err, out)
	}
	if v := clientTargetsVersion(t, s); v != 3 {
		t.Fatalf("after the rerun a client sees targets v%d, want 3", v)
	}
}

// clientTargetsVersion runs go-tuf's updater over the published folder
// with a fresh cache, from root v1.
func clientTargetsVersion(t *testing.T, s *setup) int64 {
	t.Helper()
	up, err := Source{Dir: s.path("isolated"), Root: filepath.Join(s.path("isolated"), "metadata", "1.root.json"), Cache: t.TempDir()}.Refresh()
	if err != nil {
		t.Fatalf("a TUF client refuses the published repository: %v", err)
	}
	return up.GetTrustedMetadataSet().Targets["targets"].Signed.Version
}

// TestPublishWriteErrorLeavesOldState (issue 11): a write error while
// publishing (a full disk) leaves the published repository as it was —
// a TUF client sees the old targets — and the same import run again
// completes.
func TestPublishWriteErrorLeavesOldState(t *testing.T) {
	keys, uris := killKeys(t)
	for _, limit := range []int{100, 1500} {
		t.Run(fmt.Sprintf("files-over-%d-bytes", limit), func(t *testing.T) {
			s, b2, a2 := killSetup(t, keys)
			cmd := childImport(s, b2, a2, uris)
			cmd.Env = append(cmd.Env, fmt.Sprintf("COLDHARBOR_FSIZE=%d", limit))
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Skipf("every file fit in %d bytes", limit)
			}
			if !strings.Contains(string(out), "file too large") {
				t.Fatalf("the import failed, but not on a write:\n%s", out)
			}
			if v := clientTargetsVersion(t, s); v != 2 {
				t.Fatalf("after a failed publish a client sees targets v%d, want the old v2", v)
			}
			if out, err := childImport(s, b2, a2, uris).CombinedOutput(); err != nil {
				t.Fatalf("the same import with room again: %v\n%s", err, out)
			}
			if v := clientTargetsVersion(t, s); v != 3 {
				t.Fatalf("after the rerun a client sees targets v%d, want 3", v)
			}
		})
	}
}

// killKeys makes file keys for snapshot and timestamp, which a child
// process can open by URI.
func killKeys(t *testing.T) (keys []*hsm.Key, uris []string) {
	dir := t.TempDir()
	for _, n := range []string{"snapshot", "timestamp"} {
		uri := "file:" + filepath.Join(dir, n+".key")
		k, err := hsm.Generate(context.Background(), uri, hsm.WithSecrets(hsm.StaticSecret(killPassword)))
		if err != nil {
			t.Fatal(err)
		}
		keys, uris = append(keys, k), append(uris, uri)
	}
	return keys, uris
}
