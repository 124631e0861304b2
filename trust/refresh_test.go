package trust

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/coldharbor/coldharbor/internal/testfs"
)

// clientRefresh runs go-tuf's updater against dir served on loopback, with
// the repository's root v1 as the bootstrap root and a fresh cache.
func clientRefresh(t *testing.T, dir string) error {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	root, err := readMeta(dir, Root, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.New(srv.URL+"/metadata", root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = t.TempDir(), t.TempDir()
	cfg.SetDefaultFetcherHTTPClient(&http.Client{Timeout: 10 * time.Second})
	up, err := updater.New(cfg)
	if err != nil {
		return err
	}
	return up.Refresh()
}

func refreshOpts(r *repo) RefreshOptions {
	return RefreshOptions{Timestamp: r.tsKey.Signer, Snapshot: r.snapKey.Signer, Publish: true}
}

func TestRefreshNothingDue(t *testing.T) {
	r := newRepo(t, time.Now())
	before := tsVersion(t, r.dir)
	res, err := Refresh(context.Background(), r.dir, refreshOpts(r))
	must(t, err)
	if res.Refreshed || tsVersion(t, r.dir) != before {
		t.Fatalf("refreshed a fresh timestamp: %+v", res)
	}
	o := refreshOpts(r)
	o.Force = true
	res, err = Refresh(context.Background(), r.dir, o)
	must(t, err)
	if !res.Refreshed || tsVersion(t, r.dir) != before+1 || res.Snapshot != nil {
		t.Fatalf("forced refresh: %+v, version %d", res, tsVersion(t, r.dir))
	}
}

// A repository nobody refreshed past its timestamp's expiry is refused by a
// TUF client with an expiry error, and accepted after refresh.
func TestRefreshRevivesExpiredTimestamp(t *testing.T) {
	r := newRepo(t, time.Now().Add(-48*time.Hour))
	var expired *metadata.ErrExpiredMetadata
	if err := clientRefresh(t, r.dir); !errors.As(err, &expired) {
		t.Fatalf("client on an expired timestamp: %v, want ErrExpiredMetadata", err)
	}
	res, err := Refresh(context.Background(), r.dir, refreshOpts(r))
	must(t, err)
	if !res.Refreshed || res.Snapshot != nil {
		t.Fatalf("refresh: %+v (the 7-day snapshot was not due)", res)
	}
	if err := clientRefresh(t, r.dir); err != nil {
		t.Fatalf("client after refresh: %v", err)
	}
}

func TestRefreshSnapshotWhenDue(t *testing.T) {
	// Made 6.5 days ago: the snapshot expires in half a day, before a new
	// one-day timestamp would.
	r := newRepo(t, time.Now().Add(-156*time.Hour))
	o := refreshOpts(r)
	o.Snapshot = nil
	if _, err := Refresh(context.Background(), r.dir, o); err == nil {
		t.Fatal("refreshed without the snapshot key although the snapshot is due")
	}
	res, err := Refresh(context.Background(), r.dir, refreshOpts(r))
	must(t, err)
	if res.Snapshot == nil || res.SnapshotV != 2 || res.TimestampV != 2 {
		t.Fatalf("refresh: %+v", res)
	}
	if err := clientRefresh(t, r.dir); err != nil {
		t.Fatal(err)
	}
}

func TestRefreshWrongKeyRefused(t *testing.T) {
	r := newRepo(t, time.Now())
	o := refreshOpts(r)
	o.Timestamp, o.Force = r.snapKey.Signer, true
	_, err := Refresh(context.Background(), r.dir, o)
	var ve *VerificationError
	if !errors.As(err, &ve) || ve.What != Timestamp {
		t.Fatalf("refresh with the snapshot key as timestamp key: %v", err)
	}
}

// Two refreshes at once: the lock Refresh takes serialises them; the repository stays
// valid and the timestamp version goes up by exactly two.
func TestConcurrentRefreshes(t *testing.T) {
	r := newRepo(t, time.Now())
	before := tsVersion(t, r.dir)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := refreshOpts(r)
			o.Force = true
			_, err := Refresh(context.Background(), r.dir, o)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	if got := tsVersion(t, r.dir); got != before+2 {
		t.Fatalf("timestamp v%d after two refreshes from v%d", got, before)
	}
	if _, err := Verify(context.Background(), r.dir, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestApplyRefresh(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, time.Now())
	site := filepath.Join(t.TempDir(), "site")
	testfs.CopyDir(t, r.dir, site)
	o := refreshOpts(r)
	o.Force, o.Publish = true, false
	res, err := Refresh(ctx, r.dir, o)
	must(t, err)
	tsBytes, _ := res.Timestamp.ToBytes(true)
	if _, err := ApplyRefresh(ctx, site, tsBytes, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if tsVersion(t, site) != 2 {
		t.Fatalf("site timestamp v%d", tsVersion(t, site))
	}
	// The same bundle again is not above the trusted version.
	_, err = ApplyRefresh(ctx, site, tsBytes, nil, time.Time{})
	if !IsVerification(err) {
		t.Fatalf("replayed refresh: %v", err)
	}
	// A timestamp signed by another key is refused.
	forged := metadata.Timestamp(res.Timestamp.Signed.Expires)
	forged.Signed.Version = 9
	forged.Signed.Meta["snapshot.json"] = metadata.MetaFile(1)
	must(t, Sign(forged, Timestamp, r.targetsKey.Signer))
	fb, _ := forged.ToBytes(true)
	if _, err := ApplyRefresh(ctx, site, fb, nil, time.Time{}); !IsVerification(err) {
		t.Fatalf("forged refresh: %v", err)
	}
}

func tsVersion(t *testing.T, dir string) int64 {
	t.Helper()
	b, err := readMeta(dir, Timestamp, 0)
	must(t, err)
	ts, err := metadata.Timestamp().FromBytes(b)
	must(t, err)
	return ts.Signed.Version
}

// The public metadata/ folder rolled back (an old timestamp restored, or
// timestamp.json deleted) is refused against the private record.
func TestRollbackAgainstRecord(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, time.Now())
	old, err := readMeta(r.dir, Timestamp, 0)
	must(t, err)
	must(t, r.bump(t, 2, r.snapKey.Signer, r.tsKey.Signer))
	ts := filepath.Join(r.dir, MetadataDir, "timestamp.json")
	must(t, os.WriteFile(ts, old, 0o644))
	if _, err := LoadState(ctx, r.dir); !IsVerification(err) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("old timestamp restored: %v", err)
	}
	must(t, os.Remove(ts))
	if _, err := LoadState(ctx, r.dir); !IsVerification(err) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("timestamp deleted: %v", err)
	}
}

// A signed targets file dropped into metadata/ (say, from an approval that
// travelled on untrusted media) is not published by refresh.
func TestRefreshKeepsPublishedTargets(t *testing.T) {
	r := newRepo(t, time.Now())
	stray := NextTargets(r.targets, time.Now(), time.Hour)
	must(t, Sign(stray, Targets, r.targetsKey.Signer))
	b, _ := stray.ToBytes(true)
	must(t, os.WriteFile(filepath.Join(r.dir, MetadataDir, "2.targets.json"), b, 0o644))
	o := refreshOpts(r)
	o.Force = true
	if _, err := Refresh(context.Background(), r.dir, o); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(context.Background(), r.dir, VerifyOptions{})
	must(t, err)
	if v.Targets.Signed.Version != 1 {
		t.Fatalf("refresh published targets v%d", v.Targets.Signed.Version)
	}
}

// A refresh bundle's timestamp must name the snapshot it carries, or the
// published one: never an older snapshot lying on disk.
func TestApplyRefreshSnapshotConsistency(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, time.Now())
	must(t, r.bump(t, 2, r.snapKey.Signer, r.tsKey.Signer))
	ts := metadata.Timestamp(time.Now().Add(time.Hour))
	ts.Signed.Version = 9
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(1) // the old snapshot
	must(t, Sign(ts, Timestamp, r.tsKey.Signer))
	b, _ := ts.ToBytes(true)
	if _, err := ApplyRefresh(ctx, r.dir, b, nil, time.Time{}); !IsVerification(err) || !strings.Contains(err.Error(), "names snapshot v1") {
		t.Fatalf("timestamp naming an old snapshot: %v", err)
	}
}
