package ceremony

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

type keyset struct {
	root                         []*hsm.Key
	targets, snapshot, timestamp *hsm.Key
}

func newKeys(t *testing.T) keyset {
	return keyset{
		root:      []*hsm.Key{testkeys.New(t, "root1.key"), testkeys.New(t, "root2.key"), testkeys.New(t, "root3.key")},
		targets:   testkeys.New(t, "targets.key"),
		snapshot:  testkeys.New(t, "snapshot.key"),
		timestamp: testkeys.New(t, "timestamp.key"),
	}
}

// twoOfThree is the acceptance ceremony: a 2-of-3 root where two holders
// are present and the third gave only a public key.
func twoOfThree(dir string, k keyset, now time.Time) InitOptions {
	return InitOptions{
		Dir:              dir,
		RootKeys:         []*hsm.Key{k.root[0], k.root[1], testkeys.PublicOnly(k.root[2])},
		RootThreshold:    2,
		TargetsKeys:      []*hsm.Key{k.targets},
		TargetsThreshold: 1,
		SnapshotKey:      k.snapshot,
		TimestampKey:     k.timestamp,
		Now:              now,
		Tool:             "test",
	}
}

// serve publishes dir's metadata/ and targets/ (never the private state) on
// loopback, as a static web server would.
func serve(t *testing.T, dir string) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/metadata/", http.StripPrefix("/metadata/", http.FileServer(http.Dir(filepath.Join(dir, trust.MetadataDir)))))
	mux.Handle("/targets/", http.StripPrefix("/targets/", http.FileServer(http.Dir(filepath.Join(dir, trust.TargetsDir)))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// refresh runs go-tuf's updater against url, bootstrapped with rootBytes,
// exactly as a client in the isolated network would.
func refresh(t *testing.T, url string, rootBytes []byte) error {
	t.Helper()
	cfg, err := config.New(url+"/metadata", rootBytes)
	if err != nil {
		return err
	}
	cfg.RemoteTargetsURL = url + "/targets"
	cfg.LocalMetadataDir = t.TempDir()
	cfg.LocalTargetsDir = t.TempDir()
	if err := cfg.SetDefaultFetcherHTTPClient(&http.Client{Timeout: 10 * time.Second}); err != nil {
		return err
	}
	up, err := updater.New(cfg)
	if err != nil {
		return err
	}
	return up.Refresh()
}

func TestInitAcceptedByTUFClient(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t)
	res, err := Init(ctx, twoOfThree(dir, k, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	rootBytes, err := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(rootBytes)
	if res.RootSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("printed root sha256 %s is not the file's %x", res.RootSHA256, sum)
	}
	if got := len(res.Roles[trust.Root].SignedBy); got != 2 {
		t.Errorf("root signed by %d keys, want 2", got)
	}
	if len(res.Pending) != 0 {
		t.Errorf("pending %v with every key present", res.Pending)
	}
	srv := serve(t, dir)
	if err := refresh(t, srv.URL, rootBytes); err != nil {
		t.Fatalf("go-tuf updater refuses a fresh 2-of-3 repository: %v", err)
	}
	if _, err := trust.Verify(ctx, dir, trust.VerifyOptions{}); err != nil {
		t.Fatalf("trust.Verify: %v", err)
	}

	root, _ := metadata.Root().FromBytes(rootBytes)
	if root.Signed.Roles[trust.Root].Threshold != 2 || len(root.Signed.Roles[trust.Root].KeyIDs) != 3 {
		t.Fatalf("root role = %+v, want 2 of 3", root.Signed.Roles[trust.Root])
	}
	if !root.Signed.ConsistentSnapshot {
		t.Fatal("consistent snapshots are off")
	}
	if root.Signed.Expires.Nanosecond() != 0 || root.Signed.Expires.Location() != time.UTC {
		t.Errorf("expiry %v has fractions or is not UTC", root.Signed.Expires)
	}
}

func TestInitRootMissingSignatureRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Init(ctx, twoOfThree(dir, newKeys(t), time.Time{})); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "metadata", "1.root.json")
	data, _ := os.ReadFile(path)
	root, err := metadata.Root().FromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	root.Signatures = root.Signatures[:1] // one of the two root signatures removed
	tampered, _ := root.ToBytes(true)
	os.WriteFile(path, tampered, 0o644)
	os.Remove(filepath.Join(dir, trust.StateDir, "trusted-root.json"))

	srv := serve(t, dir)
	err = refresh(t, srv.URL, tampered)
	var unsigned *metadata.ErrUnsignedMetadata
	if !errors.As(err, &unsigned) {
		t.Fatalf("updater with a 1-of-2-signed root: err = %v, want ErrUnsignedMetadata", err)
	}
	_, err = trust.Verify(ctx, dir, trust.VerifyOptions{})
	var v *trust.VerificationError
	if !errors.As(err, &v) || v.What != trust.Root {
		t.Fatalf("trust.Verify: err = %v, want a root VerificationError", err)
	}
}

func TestInitExpiredRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// A ceremony held two years ago: every role has expired since.
	then := time.Now().AddDate(-2, 0, 0)
	if _, err := Init(ctx, twoOfThree(dir, newKeys(t), then)); err != nil {
		t.Fatal(err)
	}
	rootBytes, _ := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	srv := serve(t, dir)
	err := refresh(t, srv.URL, rootBytes)
	var expired *metadata.ErrExpiredMetadata
	if !errors.As(err, &expired) {
		t.Fatalf("updater with expired metadata: err = %v, want ErrExpiredMetadata", err)
	}
	_, err = trust.Verify(ctx, dir, trust.VerifyOptions{})
	var v *trust.VerificationError
	if !errors.As(err, &v) || !strings.Contains(v.Error(), "expired") {
		t.Fatalf("trust.Verify: err = %v, want an expiry refusal", err)
	}
	// The same repository verifies at the time it was made.
	if _, err := trust.Verify(ctx, dir, trust.VerifyOptions{Now: then.Add(time.Hour)}); err != nil {
		t.Fatalf("verify at ceremony time: %v", err)
	}
}

func TestInitRefusals(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t)
	tests := []struct {
		name   string
		mutate func(*InitOptions)
		want   string
	}{
		{"threshold above keys", func(o *InitOptions) { o.RootThreshold = 4 }, "threshold 4 is impossible with 3 key(s)"},
		{"zero threshold", func(o *InitOptions) { o.TargetsThreshold = 0 }, "threshold 0 is impossible"},
		{"duplicate root key", func(o *InitOptions) { o.RootKeys = []*hsm.Key{k.root[0], k.root[0], k.root[1]} }, "the same key is given twice"},
		{"duplicate as public", func(o *InitOptions) { o.RootKeys = []*hsm.Key{k.root[0], testkeys.PublicOnly(k.root[0])} }, "the same key is given twice"},
		{"offline key online", func(o *InitOptions) { o.TimestampKey = k.targets }, "must not also be an online key"},
		{"no timestamp key", func(o *InitOptions) { o.TimestampKey = nil }, "timestamp: no key given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o := twoOfThree(dir, k, time.Time{})
			tt.mutate(&o)
			_, err := Init(ctx, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("a refused ceremony wrote %d entries into the repository", len(entries))
			}
		})
	}
}

func TestInitExistingRepository(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t)
	first, err := Init(ctx, twoOfThree(dir, k, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if _, err := Init(ctx, twoOfThree(dir, newKeys(t), time.Time{})); err == nil || !strings.Contains(err.Error(), "already holds a TUF repository") {
		t.Fatalf("second init: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if !bytes.Equal(before, after) {
		t.Fatal("a refused init changed root v1")
	}
	o := twoOfThree(dir, newKeys(t), time.Time{})
	o.Force = true
	second, err := Init(ctx, o)
	if err != nil {
		t.Fatalf("init --force: %v", err)
	}
	if second.RootSHA256 == first.RootSHA256 {
		t.Fatal("--force kept the old root")
	}
	if _, err := trust.Verify(ctx, dir, trust.VerifyOptions{}); err != nil {
		t.Fatalf("after --force the pinned root is stale: %v", err)
	}
}

func TestInitOnlinePublicKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t)
	o := twoOfThree(dir, k, time.Time{})
	o.SnapshotKey, o.TimestampKey = testkeys.PublicOnly(k.snapshot), testkeys.PublicOnly(k.timestamp)
	res, err := Init(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Pending, ",") != "snapshot,timestamp" {
		t.Fatalf("pending = %v", res.Pending)
	}
	for _, f := range []string{"1.root.json", "1.targets.json"} {
		if _, err := os.Stat(filepath.Join(dir, "metadata", f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	for _, f := range []string{"1.snapshot.json", "timestamp.json"} {
		if _, err := os.Stat(filepath.Join(dir, "metadata", f)); err == nil {
			t.Errorf("%s written unsigned", f)
		}
	}
	st, err := trust.Status(ctx, dir, time.Now(), trust.DefaultWarn())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		want := trust.StateOK
		if s.Role == trust.Snapshot || s.Role == trust.Timestamp {
			want = trust.StateMissing
		}
		if s.State != want {
			t.Errorf("%s state %s, want %s", s.Role, s.State, want)
		}
	}
}

func TestTranscriptChain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	res, err := Init(ctx, twoOfThree(dir, newKeys(t), time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, trust.TranscriptFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	prev, n := "", 0
	steps := map[string]int{}
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		n++
		if e.Seq != n || e.Prev != prev {
			t.Fatalf("line %d: seq %d prev %q, want %d %q", n, e.Seq, e.Prev, n, prev)
		}
		steps[e.Step]++
		s := sha256.Sum256(sc.Bytes())
		prev = hex.EncodeToString(s[:])
	}
	if prev != res.TranscriptHead {
		t.Fatalf("transcript head %s, last line hashes to %s", res.TranscriptHead, prev)
	}
	// 6 keys; signatures: 2 root + targets + snapshot + timestamp.
	if steps["key"] != 6 || steps["sign"] != 5 || steps["init.start"] != 1 || steps["init.published"] != 1 {
		t.Fatalf("steps = %v", steps)
	}
}

// Holders sign one after another: a ceremony with fewer keys present than
// the thresholds waits, publishes nothing, and completes with the last
// signature.
func TestPendingCeremony(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t)
	o := twoOfThree(dir, k, time.Time{})
	o.RootKeys = []*hsm.Key{k.root[0], testkeys.PublicOnly(k.root[1]), testkeys.PublicOnly(k.root[2])}
	o.TargetsKeys = []*hsm.Key{testkeys.PublicOnly(k.targets)}
	res, err := Init(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Missing[trust.Root].Needed != 1 || res.Missing[trust.Targets].Needed != 1 {
		t.Fatalf("missing = %+v", res.Missing)
	}
	if trust.Exists(dir) {
		t.Fatal("an incomplete ceremony published metadata")
	}
	if _, err := Init(ctx, o); err == nil || !strings.Contains(err.Error(), "a ceremony is pending") {
		t.Fatalf("init over a pending ceremony: %v", err)
	}
	st, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Missing[trust.Root].Signed) != 1 || len(st.Missing[trust.Root].From) != 2 {
		t.Fatalf("status = %+v", st.Missing)
	}
	// The second root holder comes in.
	res, err = Sign(ctx, SignOptions{Dir: dir, Keys: []*hsm.Key{k.root[1]}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Missing[trust.Root]; ok || res.Missing[trust.Targets].Needed != 1 || trust.Exists(dir) {
		t.Fatalf("after root2: missing %+v", res.Missing)
	}
	for _, bad := range []*hsm.Key{k.root[1], testkeys.New(t, "stranger.key"), k.snapshot} {
		if _, err := Sign(ctx, SignOptions{Dir: dir, Keys: []*hsm.Key{bad}}); err == nil || !strings.Contains(err.Error(), "nothing to sign") {
			t.Fatalf("sign with %s: %v", bad.URI, err)
		}
	}
	// The targets holder: complete, published, verifiable.
	res, err = Sign(ctx, SignOptions{Dir: dir, Keys: []*hsm.Key{k.targets}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Missing) != 0 || !trust.Exists(dir) || res.RootSHA256 == "" {
		t.Fatalf("after the last holder: %+v", res)
	}
	if _, err := trust.Verify(ctx, dir, trust.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	rootBytes, _ := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if err := refresh(t, serve(t, dir).URL, rootBytes); err != nil {
		t.Fatalf("go-tuf updater: %v", err)
	}
	if hasPending(dir) {
		t.Fatal("the pending state was left behind")
	}
	if _, err := openTranscript(filepath.Join(dir, trust.TranscriptFile), time.Now); err != nil {
		t.Fatalf("transcript chain: %v", err)
	}
	if _, err := Sign(ctx, SignOptions{Dir: dir, Keys: []*hsm.Key{k.root[2]}}); err == nil {
		t.Fatal("signed with no ceremony pending")
	}
}

// The transcript replays: chain, keys, files, root v1; and any edit to the
// record or to a published file is found.
func TestVerifyTranscript(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	res, err := Init(ctx, twoOfThree(dir, newKeys(t), time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.TranscriptHead != res.TranscriptHead || rep.RootSHA256 != res.RootSHA256 || len(rep.Keys[trust.Root]) != 3 {
		t.Fatalf("report %+v", rep)
	}
	tp := filepath.Join(dir, trust.TranscriptFile)
	orig, _ := os.ReadFile(tp)
	for name, edit := range map[string]func(){
		"edited line": func() {
			os.WriteFile(tp, bytes.Replace(orig, []byte(`"step":"key"`), []byte(`"step":"kee"`), 1), 0o644)
		},
		"removed line": func() {
			lines := bytes.SplitAfter(orig, []byte("\n"))
			os.WriteFile(tp, bytes.Join(append(lines[:2:2], lines[3:]...), nil), 0o644)
		},
		"changed targets v1": func() {
			os.WriteFile(tp, orig, 0o644)
			f := filepath.Join(dir, "metadata", "1.targets.json")
			b, _ := os.ReadFile(f)
			os.WriteFile(f, append(b, ' '), 0o644)
		},
	} {
		edit()
		if _, err := Verify(ctx, dir); !trust.IsVerification(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A ceremony whose publication fails after the last signature (here: the
// metadata folder cannot be made) is finished by `ceremony sign` with no
// key, with the very signatures the holders made.
func TestPendingPublishInterrupted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t)
	o := twoOfThree(dir, k, time.Time{})
	o.TargetsKeys = []*hsm.Key{testkeys.PublicOnly(k.targets)}
	if _, err := Init(ctx, o); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "metadata")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(ctx, SignOptions{Dir: dir, Keys: []*hsm.Key{k.targets}}); err == nil {
		t.Fatal("publishing into a blocked directory succeeded")
	}
	os.Remove(blocker)
	if _, err := Sign(ctx, SignOptions{Dir: dir}); err != nil {
		t.Fatalf("finishing the interrupted ceremony: %v", err)
	}
	if _, err := trust.Verify(ctx, dir, trust.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, dir); err != nil {
		t.Fatalf("the transcript after recovery: %v", err)
	}
}

// A rotation needs the old root's threshold and the new root's; it is
// published and pinned, the transcript records it, and a TUF client that
// trusts root v1 updates to it.
func TestRotate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t)
	o := twoOfThree(dir, k, time.Time{})
	o.RootKeys = k.root // all three present
	if _, err := Init(ctx, o); err != nil {
		t.Fatal(err)
	}
	id3, _ := trust.KeyID(k.root[2].Public)
	r4 := testkeys.New(t, "root4.key")
	rot := RotateOptions{Dir: dir, AddRootKeys: []*hsm.Key{r4}, RemoveRootKeys: []string{id3}, RootThreshold: 2}
	// One old key is not the old threshold.
	rot.Keys = []*hsm.Key{k.root[0], r4}
	if _, err := Rotate(ctx, rot); !trust.IsVerification(err) {
		t.Fatalf("rotation signed by one old key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata", "2.root.json")); err == nil {
		t.Fatal("a refused rotation published root v2")
	}
	rot.Keys = []*hsm.Key{k.root[0], k.root[1]}
	res, err := Rotate(ctx, rot)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Threshold != 2 || len(res.RootKeys) != 3 {
		t.Fatalf("rotation %+v", res)
	}
	// A renewal: same keys, new expiry, signed by the new root's keys.
	if _, err := Rotate(ctx, RotateOptions{Dir: dir, Keys: []*hsm.Key{k.root[1], r4}}); err != nil {
		t.Fatalf("renewing root v3: %v", err)
	}
	if _, err := trust.Verify(ctx, dir, trust.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, dir); err != nil {
		t.Fatalf("ceremony verify after rotations: %v", err)
	}
	rootV1, _ := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if err := refresh(t, serve(t, dir).URL, rootV1); err != nil {
		t.Fatalf("a client on root v1: %v", err)
	}
	// The removed key can no longer sign a rotation.
	if _, err := Rotate(ctx, RotateOptions{Dir: dir, Keys: []*hsm.Key{k.root[2]}}); err == nil {
		t.Fatal("a removed root key signed a rotation")
	}
}
