package mirror

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/ceremony"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

// tufClient is go-tuf's updater against a repository served on loopback,
// bootstrapped with root v1 and keeping its cache between refreshes, as a
// client in the isolated network does.
type tufClient struct {
	dir, cache, targets string
}

func newTUFClient(t *testing.T, dir string) *tufClient {
	return &tufClient{dir: dir, cache: t.TempDir(), targets: t.TempDir()}
}

func (c *tufClient) refresh(t *testing.T, target string) ([]byte, error) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/metadata/", http.StripPrefix("/metadata/", http.FileServer(http.Dir(filepath.Join(c.dir, trust.MetadataDir)))))
	mux.Handle("/targets/", http.StripPrefix("/targets/", http.FileServer(http.Dir(filepath.Join(c.dir, trust.TargetsDir)))))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	root, err := os.ReadFile(filepath.Join(c.dir, trust.MetadataDir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(c.cache, "root.json")); err == nil {
		root = b
	}
	cfg, err := config.New(srv.URL+"/metadata", root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RemoteTargetsURL, cfg.LocalMetadataDir, cfg.LocalTargetsDir = srv.URL+"/targets", c.cache, c.targets
	if err := cfg.SetDefaultFetcherHTTPClient(&http.Client{Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := up.Refresh(); err != nil {
		return nil, err
	}
	ti, err := up.GetTargetInfo(target)
	if err != nil {
		return nil, err
	}
	_, b, err := up.DownloadTarget(ti, filepath.Join(t.TempDir(), "t"), "")
	return b, err
}

// Rotating a targets key and the timestamp key on the signer's side
// reaches the isolated side with the next approval: import and refresh
// there take the new timestamp key and refuse the old one naming the
// rotation, the old targets key can no longer approve, and a go-tuf client
// with a cache from before the rotation follows.
func TestRotateTargetsAndTimestampKeys(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	client := newTUFClient(t, s.path("isolated"))
	oldPub, err := client.refresh(t, trust.CosignPubTarget)
	if err != nil {
		t.Fatalf("client before the rotation: %v", err)
	}
	targets2, ts2 := testkeys.New(t, "targets2"), testkeys.New(t, "timestamp2")
	oldTargets, oldTS := s.targets, s.timestamp
	oldID, _ := trust.KeyID(oldTargets.Public)
	rot := ceremony.RotateOptions{Dir: s.signer, AddTargetsKeys: []*hsm.Key{targets2}, RemoveKeys: []string{oldID},
		TimestampKey: testkeys.PublicOnly(ts2), Keys: []*hsm.Key{s.root}}
	if _, err := ceremony.Rotate(ctx, rot); !trust.IsVerification(err) || !strings.Contains(err.Error(), "re-signed in this sitting") {
		t.Fatalf("a targets rotation without the new targets key: %v", err)
	}
	rot.Keys = []*hsm.Key{s.root, targets2}
	res, err := ceremony.Rotate(ctx, rot)
	if err != nil {
		t.Fatal(err)
	}
	if res.TargetsVersion == 0 || strings.Join(res.Changed, ",") != "targets,timestamp" {
		t.Fatalf("rotation result %+v", res)
	}
	if _, err := ceremony.Verify(ctx, s.signer); err != nil {
		t.Fatalf("ceremony verify after the rotation: %v", err)
	}

	// The old targets key can no longer approve a bundle.
	s.targets = oldTargets
	if err := s.signWith(t, oldTargets); !trust.IsVerification(err) {
		t.Fatalf("the rotated-out targets key approved a bundle: %v", err)
	}
	s.targets = targets2
	b, a := s.makeBundle(t, "b2", testimages.AppOne)

	before := tsVersion(t, s.path("isolated"))
	if _, err := s.importPair(b, a); !trust.IsVerification(err) || !strings.Contains(err.Error(), "rotated it out") {
		t.Fatalf("import with the old timestamp key: %v", err)
	}
	if tsVersion(t, s.path("isolated")) != before {
		t.Fatal("a refused import published a timestamp")
	}
	s.timestamp = ts2
	if _, err := s.importPair(b, a); err != nil {
		t.Fatalf("import with the new timestamp key: %v", err)
	}
	newPub, err := client.refresh(t, trust.CosignPubTarget)
	if err != nil {
		t.Fatalf("client after the rotation: %v", err)
	}
	if string(newPub) == string(oldPub) || !strings.Contains(string(newPub), "PUBLIC KEY") {
		t.Fatal("the client still sees the old cosign.pub")
	}

	// Refresh on the isolated side: the old timestamp key is refused.
	_, err = trust.Refresh(ctx, s.path("isolated"), trust.RefreshOptions{Timestamp: oldTS.Signer, Force: true, Publish: true})
	if !trust.IsVerification(err) || !strings.Contains(err.Error(), "rotated it out") {
		t.Fatalf("refresh with the old timestamp key: %v", err)
	}
	if _, err := trust.Refresh(ctx, s.path("isolated"), trust.RefreshOptions{Timestamp: ts2.Signer, Force: true, Publish: true}); err != nil {
		t.Fatalf("refresh with the new timestamp key: %v", err)
	}
	if _, err := client.refresh(t, testimages.AppOne); err != nil {
		t.Fatalf("client after the refresh: %v", err)
	}
}

// signWith exports a bundle and signs it with k alone.
func (s *setup) signWith(t *testing.T, k *hsm.Key) error {
	ctx := context.Background()
	b, _ := s.makeBundleUnsigned(t, "unsigned", testimages.AppTwo)
	f, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := approve.MakePlan(ctx, f, b, s.signer)
	if err != nil {
		return err
	}
	_, err = p.Sign(ctx, approve.Options{Keys: []*hsm.Key{k}})
	return err
}

func tsVersion(t *testing.T, dir string) int64 {
	st, err := trust.LoadState(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return st.Timestamp.Signed.Version
}
