package mirror

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/ceremony"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

// flaky is a registry that can be made to fail: an outage in the middle of
// an import.
type flaky struct {
	h    http.Handler
	fail atomic.Bool
	// failOn decides which requests fail while fail is set.
	failOn func(*http.Request) bool
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.fail.Load() && f.failOn(r) {
		http.Error(w, "registry outage", http.StatusServiceUnavailable)
		return
	}
	f.h.ServeHTTP(w, r)
}

type setup struct {
	srcHost, signer     string
	targets, root       *hsm.Key
	dir                 string
	bundle, approval    string
	dest                string
	snapshot, timestamp *hsm.Key
	dst                 *flaky
	// exportFormat and importFormat are the two --signature-format values
	// (empty: the libraries' defaults, legacy and auto).
	exportFormat, importFormat string
}

func newSetup(t *testing.T) *setup { return newSetupReferrers(t, false) }

// newSetupReferrers is newSetup with registries that serve the OCI 1.1
// referrers API (referrers true) or not (clients use the fallback tag).
func newSetupReferrers(t *testing.T, referrers bool) *setup {
	return newSetupKeys(t, referrers, testkeys.New(t, "snapshot"), testkeys.New(t, "timestamp"))
}

// newSetupKeys is newSetupReferrers with the given online keys.
func newSetupKeys(t *testing.T, referrers bool, snapshot, timestamp *hsm.Key) *setup {
	ctx := context.Background()
	reg := func() http.Handler {
		return registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrers))
	}
	src := httptest.NewServer(reg())
	t.Cleanup(src.Close)
	dst := &flaky{h: reg()}
	dsrv := httptest.NewServer(dst)
	t.Cleanup(dsrv.Close)
	srcHost := strings.TrimPrefix(src.URL, "http://")
	fix, err := testimages.New(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testimages.Push(ctx, srcHost, fix); err != nil {
		t.Fatal(err)
	}
	s := &setup{dir: t.TempDir(), dest: strings.TrimPrefix(dsrv.URL, "http://") + "/mirror", dst: dst,
		snapshot: snapshot, timestamp: timestamp}
	root, targets := testkeys.New(t, "root"), testkeys.New(t, "targets")
	signer := filepath.Join(s.dir, "signer")
	s.srcHost, s.signer, s.targets, s.root = srcHost, signer, targets, root
	if _, err := ceremony.Init(ctx, ceremony.InitOptions{Dir: signer, RootKeys: []*hsm.Key{root}, RootThreshold: 1,
		TargetsKeys: []*hsm.Key{targets}, TargetsThreshold: 1,
		SnapshotKey: testkeys.PublicOnly(s.snapshot), TimestampKey: testkeys.PublicOnly(s.timestamp)}); err != nil {
		t.Fatal(err)
	}
	testfs.CopyDir(t, signer, s.path("isolated"))
	s.bundle, s.approval = s.makeBundle(t, "b1", testimages.MultiArch, testimages.AppOne, testimages.AppTwo)
	return s
}

// makeBundleUnsigned exports images from the source, as the connected side
// would; it returns the bundle's path and bytes.
func (s *setup) makeBundleUnsigned(t *testing.T, name string, images ...string) (string, []byte) {
	ctx := context.Background()
	var specs []export.ImageSpec
	for _, img := range images {
		specs = append(specs, export.ImageSpec{Source: s.srcHost + "/" + img})
	}
	var buf bytes.Buffer
	if _, err := export.Write(ctx, &buf, export.Options{Repo: s.signer, Destination: s.dest, Images: specs, Renew: len(specs) == 0, SignatureFormat: s.exportFormat}); err != nil {
		t.Fatal(err)
	}
	bundlePath := s.path(name + ".tar")
	os.WriteFile(bundlePath, buf.Bytes(), 0o644)
	return bundlePath, buf.Bytes()
}

// makeBundle exports images from the source and signs the bundle, as the
// connected side and the signer would; it returns the two files.
func (s *setup) makeBundle(t *testing.T, name string, images ...string) (bundlePath, approvalPath string) {
	ctx := context.Background()
	bundlePath, raw := s.makeBundleUnsigned(t, name, images...)
	p, err := approve.MakePlan(ctx, bytes.NewReader(raw), bundlePath, s.signer)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Sign(ctx, approve.Options{Keys: []*hsm.Key{s.targets}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Record(ctx, s.signer, res); err != nil {
		t.Fatal(err)
	}
	approvalPath = s.path(name + "-approval.tar")
	os.WriteFile(approvalPath, res.Approval, 0o644)
	return bundlePath, approvalPath
}

func (s *setup) path(p string) string { return filepath.Join(s.dir, p) }

func (s *setup) importOnce() (*ImportResult, error) { return s.importPair(s.bundle, s.approval) }

func (s *setup) importPair(b, a string) (*ImportResult, error) {
	return Import(context.Background(), b, a, s.importOptions())
}

func (s *setup) importOptions() ImportOptions {
	return ImportOptions{Repo: s.path("isolated"), Registry: s.dest,
		SnapshotKey: s.snapshot, TimestampKey: s.timestamp, Jobs: 3, SignatureFormat: s.importFormat,
		// ggcr retries 5xx with backoff; an outage in a test need not wait.
		Remote: []remote.Option{remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 2})}}
}

// TestOutageThenRerun: an outage at any stage of the push leaves the
// published repository as it was, and the same import run again completes.
func TestOutageThenRerun(t *testing.T) {
	stages := []struct {
		name   string
		failOn func(*http.Request) bool
	}{
		{"blob uploads", func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/uploads") }},
		{"manifests", func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/sha256:")
		}},
		{"tags", func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && !strings.Contains(r.URL.Path, "sha256")
		}},
		{"signatures", func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, ".sig")
		}},
	}
	for _, st := range stages {
		t.Run(st.name, func(t *testing.T) {
			s := newSetup(t)
			before := testfs.TreeHash(t, s.path("isolated"), "lock")
			s.dst.failOn = st.failOn
			s.dst.fail.Store(true)
			if _, err := s.importOnce(); err == nil {
				t.Fatal("import succeeded through an outage")
			} else if trust.IsVerification(err) {
				t.Fatalf("an outage was reported as a refusal: %v", err)
			}
			if after := testfs.TreeHash(t, s.path("isolated"), "lock"); after != before {
				t.Fatal("a failed import changed the published repository")
			}
			s.dst.fail.Store(false)
			res, err := s.importOnce()
			if err != nil {
				t.Fatalf("the same import again: %v", err)
			}
			if len(res.Images) != 3 || res.TargetsVersion != 2 {
				t.Fatalf("rerun result %+v", res)
			}
			if _, err := trust.Verify(context.Background(), s.path("isolated"), trust.VerifyOptions{}); err != nil {
				t.Fatal(err)
			}
			repo, _ := name.NewRepository(s.dest + "/demo/app-one")
			tags, err := remote.List(repo)
			if err != nil || len(tags) != 2 { // 1.0 and the .sig
				t.Fatalf("tags after rerun: %v %v", tags, err)
			}
		})
	}
}

// TestPublishCrashThenRerun: a crash after targets but before the new
// timestamp (simulated by publishing only targets and a snapshot) leaves
// clients on the old state; the same import completes over the orphans.
func TestPublishCrashThenRerun(t *testing.T) {
	s := newSetup(t)
	st, err := trust.LoadState(context.Background(), s.path("isolated"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := verify(context.Background(), st, s.bundle, s.approval, s.dest, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := nextPublication(context.Background(), ImportOptions{Repo: s.path("isolated"), SnapshotKey: s.snapshot, TimestampKey: s.timestamp}, st, p, time.Now())
	p.b.Close()
	if err != nil {
		t.Fatal(err)
	}
	pub.Timestamp = nil // the crash
	if err := trust.Publish(context.Background(), s.path("isolated"), *pub); err != nil {
		t.Fatal(err)
	}
	if _, err := s.importOnce(); err != nil {
		t.Fatalf("import after a crashed publish: %v", err)
	}
	v, err := trust.Verify(context.Background(), s.path("isolated"), trust.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Targets.Signed.Version != 2 || v.Timestamp.Signed.Version != 1 {
		t.Fatalf("targets v%d timestamp v%d", v.Targets.Signed.Version, v.Timestamp.Signed.Version)
	}
}

// An approval whose targets carry images from an earlier approval that was
// never imported is refused: those targets would name images the registry
// lacks. Imported in signing order, both go through.
func TestApprovalsInOrder(t *testing.T) {
	s := newSetup(t)
	b2, a2 := s.makeBundle(t, "b2", testimages.AppOne)
	_, err := s.importPair(b2, a2)
	if !trust.IsVerification(err) || !strings.Contains(err.Error(), "import the earlier bundles first") {
		t.Fatalf("out-of-order import: %v", err)
	}
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	res, err := s.importPair(b2, a2)
	if err != nil {
		t.Fatalf("in-order import: %v", err)
	}
	if res.TargetsVersion != 3 {
		t.Fatalf("targets v%d", res.TargetsVersion)
	}
}

// A bundle with no images renews the targets' expiry and changes nothing else.
func TestRenewal(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	before, err := trust.Verify(context.Background(), s.path("isolated"), trust.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, a := s.makeBundle(t, "renew")
	res, err := s.importPair(b, a)
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	after, err := trust.Verify(context.Background(), s.path("isolated"), trust.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.TargetsVersion != before.Targets.Signed.Version+1 || len(res.Images) != 0 {
		t.Fatalf("renewal result %+v", res)
	}
	if len(after.Targets.Signed.Targets) != len(before.Targets.Signed.Targets) || !after.Targets.Signed.Expires.After(before.Targets.Signed.Expires.Add(-time.Second)) {
		t.Fatalf("renewal changed the targets: %d -> %d", len(before.Targets.Signed.Targets), len(after.Targets.Signed.Targets))
	}
	for n, tf := range before.Targets.Signed.Targets {
		if n == bundle.CosignPubTarget {
			continue
		}
		if got := after.Targets.Signed.Targets[n]; got == nil || !got.Hashes.Equal(tf.Hashes) {
			t.Errorf("target %s changed", n)
		}
	}
}

// A root rotated on the signer's side reaches the isolated side with the
// next approval: verified from the trusted root, published, pinned.
func TestRotationTravelsWithApproval(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	root2 := testkeys.New(t, "root2")
	if _, err := ceremony.Rotate(ctx, ceremony.RotateOptions{Dir: s.signer, AddRootKeys: []*hsm.Key{root2}, RootThreshold: 2,
		Keys: []*hsm.Key{s.root, root2}}); err != nil {
		t.Fatal(err)
	}
	b, a := s.makeBundle(t, "b2", testimages.AppOne)
	af, err := bundle.OpenApproval(a)
	if err != nil || len(af.Roots) != 1 || af.Roots[0].Version != 2 {
		t.Fatalf("the approval does not carry root v2: %v", err)
	}
	if _, err := s.importPair(b, a); err != nil {
		t.Fatalf("import with a rotated root: %v", err)
	}
	v, err := trust.Verify(ctx, s.path("isolated"), trust.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Root.Signed.Version != 2 {
		t.Fatalf("published root v%d", v.Root.Signed.Version)
	}
	// Root v2's file removed again: the pinned root is v2, nothing older.
	os.Remove(s.path("isolated/metadata/2.root.json"))
	st, err := trust.LoadState(ctx, s.path("isolated"))
	if err != nil || st.Root.Signed.Version != 2 {
		t.Fatalf("after removing 2.root.json: %v", err)
	}
}

// A root version carried by an approval that the trusted root did not sign
// (an attacker's "rotation") is refused, and nothing is published.
func TestForgedCarriedRootRefused(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	b, a := s.makeBundle(t, "b2", testimages.AppOne)
	af, err := bundle.OpenApproval(a)
	if err != nil {
		t.Fatal(err)
	}
	// Root v2 that trusts only the attacker, signed only by the attacker.
	st, err := trust.LoadState(ctx, s.signer)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := st.Root.ToBytes(false)
	forged, _ := metadata.Root().FromBytes(raw)
	forged.ClearSignatures()
	forged.Signed.Version = 2
	attacker := testkeys.New(t, "attacker")
	ak, _ := metadata.KeyFromPublicKey(attacker.Public)
	for _, id := range append([]string{}, forged.Signed.Roles[trust.Root].KeyIDs...) {
		forged.Signed.RevokeKey(id, trust.Root)
	}
	forged.Signed.AddKey(ak, trust.Root)
	if err := trust.Sign(forged, trust.Root, attacker.Signer); err != nil {
		t.Fatal(err)
	}
	fb, _ := forged.ToBytes(true)
	rewriteApproval(t, a, af, []bundle.ApprovalRoot{{Version: 2, Bytes: fb}})
	before := testfs.TreeHash(t, s.path("isolated"), "lock")
	_, err = s.importPair(b, a)
	if !trust.IsVerification(err) || !strings.Contains(err.Error(), "root v2") {
		t.Fatalf("import with a forged root v2: %v", err)
	}
	if testfs.TreeHash(t, s.path("isolated"), "lock") != before {
		t.Fatal("a refused import changed the repository")
	}
}

// rewriteApproval writes af back to path with other root members, as an
// attacker with the media could (the approval index is not signed).
func rewriteApproval(t *testing.T, path string, af *bundle.ApprovalFile, roots []bundle.ApprovalRoot) {
	t.Helper()
	a := *af.Approval
	var buf bytes.Buffer
	if err := bundle.WriteApproval(&buf, &a, af.Targets, af.CosignPub, roots); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
