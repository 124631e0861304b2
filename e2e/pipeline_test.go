package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testenv"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testregistry"
	"github.com/coldharbor/coldharbor/mirror"
)

// world is two registries (source and target), one Docker config and CA
// bundle that serve both, and a work directory.
type world struct {
	src, dst *testregistry.Registry
	work     string
	env      []string
	ropts    []remote.Option // for the test's own look-ups in the target
}

func newWorld(t *testing.T) *world {
	w := &world{src: testregistry.Start(t), dst: testregistry.Start(t), work: t.TempDir()}
	// One config and one CA file for both registries, as a site would have.
	cfgDir, caFile, err := testregistry.WriteClientConfig(w.work, map[string]*testregistry.Registry{w.src.Host: w.src, w.dst.Host: w.dst})
	if err != nil {
		t.Fatal(err)
	}
	w.env = []string{"HOME=" + w.work, "DOCKER_CONFIG=" + cfgDir, "SSL_CERT_FILE=" + caFile,
		"COLDHARBOR_PASSWORD=e2e-password", "XDG_CACHE_HOME=" + filepath.Join(w.work, "cache")}
	w.ropts = []remote.Option{remote.WithAuthFromKeychain(w.dst.Keychain()), remote.WithTransport(w.dst.Transport())}
	return w
}

func (w *world) path(p ...string) string { return filepath.Join(append([]string{w.work}, p...)...) }

func TestPipeline(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	fix, err := testimages.New(1)
	if err != nil {
		t.Fatal(err)
	}
	digests, err := testimages.Push(ctx, w.src.Host, fix, remote.WithAuthFromKeychain(w.src.Keychain()), remote.WithTransport(w.src.Transport()))
	if err != nil {
		t.Fatal(err)
	}

	// Keys and the ceremony, on the signer's side. The online keys stay in
	// the isolated network: the ceremony gets their public halves.
	os.MkdirAll(w.path("keys"), 0o700)
	for _, k := range []string{"root1", "root2", "root3", "targets", "snapshot", "timestamp"} {
		must(t, w.env, "keys", "generate", "file:"+w.path("keys", k+".key"))
	}
	key := func(k string) string { return "file:" + w.path("keys", k+".key") }
	must(t, w.env, "ceremony", "init", "--repo", w.path("signer"),
		"--root-key", key("root1"), "--root-key", key("root2"), "--root-key", w.path("keys", "root3.key.pub"), "--root-threshold", "2",
		"--targets-key", key("targets"),
		"--snapshot-key", w.path("keys", "snapshot.key.pub"), "--timestamp-key", w.path("keys", "timestamp.key.pub"))
	// The repository travels to the isolated side; the exporter has a copy
	// of what is published there.
	testfs.CopyDir(t, w.path("signer"), w.path("isolated"))
	testfs.CopyDir(t, w.path("signer"), w.path("exporter"))

	dest := w.dst.Host + "/mirror"
	src := func(n string) string { return w.src.Host + "/" + n }
	must(t, w.env, "export", "--repo", w.path("exporter"), "--dest", dest, "-o", w.path("b1.tar"),
		src(testimages.MultiArch), src(testimages.AppOne), src(testimages.AppTwo)+"=apps/two:1.0")

	// The bundle holds each blob once: the base layer the two apps share
	// is one member.
	head := readHead(t, w.path("b1.tar"))
	if n := countMembers(head, bundle.BlobName(fix.SharedBase.String())); n != 1 {
		t.Fatalf("shared base layer is in the bundle %d times, want once", n)
	}
	blobs := map[string]bool{}
	for _, m := range head.Index.Members {
		if blobs[m.Name] {
			t.Fatalf("member %s twice", m.Name)
		}
		blobs[m.Name] = true
	}
	if len(head.Index.Images) != 3 {
		t.Fatalf("bundle has %d images", len(head.Index.Images))
	}
	for _, img := range head.Index.Images {
		if img.Name == testimages.MultiArch && strings.Join(img.Platforms, ",") != "linux/amd64,linux/arm64" {
			t.Errorf("multi-arch platforms %v", img.Platforms)
		}
		if img.Name == testimages.MultiArch && img.Digest != digests[testimages.MultiArch].String() {
			t.Errorf("multi-arch digest %s, pushed %s", img.Digest, digests[testimages.MultiArch])
		}
	}

	must(t, w.env, "sign", w.path("b1.tar"), "--repo", w.path("signer"), "--key", key("targets"), "-o", w.path("a1.tar"), "--yes")
	// A second bundle and its approval, to try it against the first.
	must(t, w.env, "export", "--repo", w.path("exporter"), "--dest", dest, "-o", w.path("b2.tar"), src(testimages.AppOne))
	must(t, w.env, "sign", w.path("b2.tar"), "--repo", w.path("signer"), "--key", key("targets"), "-o", w.path("a2.tar"), "--yes")

	imp := func(b, a string) []string {
		return []string{"import", b, a, "--repo", w.path("isolated"), "--registry", dest,
			"--snapshot-key", key("snapshot"), "--timestamp-key", key("timestamp")}
	}
	before := testfs.TreeHash(t, w.path("isolated"), "lock")
	// Refusals in which nothing at all may be uploaded.
	refused(t, w.env, "made for another bundle", imp(w.path("b1.tar"), w.path("a2.tar"))...)
	forged := forgeApproval(t, w.path("a1.tar"), w.path("forged.tar"))
	refused(t, w.env, "not signed by 1 of the targets keys", imp(w.path("b1.tar"), forged)...)
	tamperedManifest := tamper(t, w.path("b1.tar"), w.path("tm.tar"), head, head.Index.Images[0].Digest)
	refused(t, w.env, "tampered or corrupt", imp(tamperedManifest, w.path("a1.tar"))...)
	reg, _ := name.NewRegistry(w.dst.Host)
	repos, err := remote.Catalog(ctx, reg, w.ropts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(repos) != 0 {
		t.Fatalf("refused imports uploaded into %v", repos)
	}
	// A tampered layer is found while streaming: blobs before it may stay,
	// but no manifest and no tag.
	tamperedBlob := tamper(t, w.path("b1.tar"), w.path("tb.tar"), head, fix.SharedBase.String())
	refused(t, w.env, "tampered or corrupt", imp(tamperedBlob, w.path("a1.tar"))...)
	for _, img := range head.Index.Images {
		repo, _ := name.NewRepository(dest + "/" + strings.SplitN(img.Name, ":", 2)[0])
		if tags, err := remote.List(repo, w.ropts...); err == nil && len(tags) > 0 {
			t.Fatalf("a refused import left tags %v in %s", tags, repo)
		}
		if _, err := remote.Head(repo.Digest(img.Digest), w.ropts...); err == nil {
			t.Fatalf("a refused import left manifest %s in %s", img.Digest, repo)
		}
	}
	if after := testfs.TreeHash(t, w.path("isolated"), "lock"); after != before {
		t.Fatal("a refused import changed the TUF repository")
	}

	// The real import.
	out := must(t, w.env, imp(w.path("b1.tar"), w.path("a1.tar"))...)
	t.Log(out)
	list := must(t, w.env, "list", "--repo", w.path("isolated"))
	for _, n := range []string{testimages.MultiArch, testimages.AppOne, "apps/two:1.0", "cosign.pub"} {
		if !strings.Contains(list, n) {
			t.Errorf("list lacks %s:\n%s", n, list)
		}
	}
	// Importing the same pair again is a rerun, not an attack (issue 11,
	// finding 8): exit 0, the registry checked, nothing published.
	if again := must(t, w.env, imp(w.path("b1.tar"), w.path("a1.tar"))...); !strings.Contains(again, "already imported: targets v2") {
		t.Fatalf("the same import again:\n%s", again)
	}

	refs := []string{dest + "/" + testimages.MultiArch, dest + "/" + testimages.AppOne, dest + "/apps/two:1.0"}
	must(t, w.env, append([]string{"verify", "--repo", w.path("isolated"), "--registry", dest}, refs...)...)

	// The real cosign verifies every image, and each platform manifest of
	// the index, with the published cosign.pub.
	cosignPub := publishedTarget(t, w.path("isolated"), "cosign.pub")
	for _, img := range head.Index.Images {
		for _, sd := range img.SignedDigests() {
			ref := dest + "/" + strings.SplitN(img.Name, ":", 2)[0] + "@" + sd.Digest
			cosignVerify(t, w, cosignPub, ref, true)
		}
	}

	// A signature altered in the registry: refused by cosign and by us.
	app := head.Index.Images[1]
	appRepo, _ := name.NewRepository(dest + "/" + strings.SplitN(app.Name, ":", 2)[0])
	alterSignature(t, appRepo, app.Digest, w.ropts)
	cosignVerify(t, w, cosignPub, appRepo.String()+"@"+app.Digest, false)
	refused(t, w.env, "no signature", "verify", "--repo", w.path("isolated"), "--registry", dest, dest+"/"+app.Name)
	// So is an index whose platform manifest's signature was altered: a
	// client pulls that manifest by digest.
	multi := head.Index.Images[0]
	multiRepo, _ := name.NewRepository(dest + "/" + strings.SplitN(multi.Name, ":", 2)[0])
	if out := must(t, w.env, "verify", "--repo", w.path("isolated"), "--registry", dest, dest+"/"+multi.Name); !strings.Contains(out, "platform linux/arm64 "+multi.Children[1].Digest) {
		t.Errorf("verify does not report the index's platform signatures:\n%s", out)
	}
	alterSignature(t, multiRepo, multi.Children[1].Digest, w.ropts)
	refused(t, w.env, "platform manifest linux/arm64", "verify", "--repo", w.path("isolated"), "--registry", dest, dest+"/"+multi.Name)

	// The second bundle was exported against targets v1 and signed after
	// the first (v3, rebased): it imports over v2, and re-signing app-one
	// replaces the altered signature.
	testfs.CopyDir(t, w.path("isolated", "metadata"), w.path("metadata-v2"))
	must(t, w.env, imp(w.path("b2.tar"), w.path("a2.tar"))...)
	must(t, w.env, "verify", "--repo", w.path("isolated"), "--registry", dest, dest+"/"+app.Name)
	cosignVerify(t, w, cosignPub, appRepo.String()+"@"+app.Digest, true)
	// Serving the older metadata again is a rollback: the client's cache
	// remembers timestamp v2.
	os.RemoveAll(w.path("isolated", "metadata"))
	testfs.CopyDir(t, w.path("metadata-v2"), w.path("isolated", "metadata"))
	refused(t, w.env, "rollback", "verify", "--repo", w.path("isolated"), "--registry", dest, dest+"/"+app.Name)
	refused(t, w.env, "rollback", "list", "--repo", w.path("isolated"))
}

func readHead(t *testing.T, path string) *bundle.Head {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := bundle.ReadHead(f, path)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func countMembers(h *bundle.Head, name string) int {
	n := 0
	for _, m := range h.Index.Members {
		if m.Name == name {
			n++
		}
	}
	return n
}

// tamper copies a bundle, flipping one byte in the middle of blob digest's
// member.
func tamper(t *testing.T, in, out string, head *bundle.Head, digest string) string {
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	var pos int64
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("member for %s not found: %v", digest, err)
		}
		if h.Name == bundle.BlobName(digest) {
			// Find the data by content: it follows its header. The last
			// copy: the head holds another of an index (head/indexes/).
			body := make([]byte, h.Size)
			io.ReadFull(tr, body)
			pos = int64(bytes.LastIndex(data, body)) + h.Size/2
			break
		}
	}
	data[pos] ^= 0xff
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// forgeApproval re-signs the approved targets with a key root does not
// trust, as an attacker with write access to the media would.
func forgeApproval(t *testing.T, in, out string) string {
	f, _ := os.Open(in)
	af, err := bundle.ReadApproval(f, in)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	tg, err := metadata.Targets().FromBytes(af.Targets)
	if err != nil {
		t.Fatal(err)
	}
	tg.ClearSignatures()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, _ := hsm.NewSigner(priv)
	if _, err := tg.Sign(s); err != nil {
		t.Fatal(err)
	}
	targets, _ := tg.ToBytes(true)
	a := *af.Approval
	a.Members = []bundle.Member{memberOf("targets.json", targets), memberOf("cosign.pub", af.CosignPub)}
	raw, _ := json.MarshalIndent(a, "", "  ")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range []struct {
		n string
		b []byte
	}{{"coldharbor-approval.json", raw}, {"targets.json", targets}, {"cosign.pub", af.CosignPub}} {
		tw.WriteHeader(&tar.Header{Name: m.n, Size: int64(len(m.b)), Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write(m.b)
	}
	tw.Close()
	os.WriteFile(out, buf.Bytes(), 0o644)
	return out
}

func memberOf(n string, b []byte) bundle.Member {
	s := sha256.Sum256(b)
	return bundle.Member{Name: n, Size: int64(len(b)), SHA256: hex.EncodeToString(s[:])}
}

// publishedTarget returns the path of a published target file.
func publishedTarget(t *testing.T, repo, target string) string {
	matches, _ := filepath.Glob(filepath.Join(repo, "targets", "*."+target))
	if len(matches) != 1 {
		t.Fatalf("published %s: %v", target, matches)
	}
	return matches[0]
}

func cosignVerify(t *testing.T, w *world, pub, ref string, wantOK bool) {
	t.Helper()
	cosign, env := testenv.Cosign(t)
	cmd := exec.CommandContext(t.Context(), cosign, "verify", "--key", pub, "--insecure-ignore-tlog=true", ref)
	cmd.Env = append(env, w.env...)
	out, err := cmd.CombinedOutput()
	if wantOK && err != nil {
		t.Fatalf("cosign verify %s: %v\n%s", ref, err, out)
	}
	if !wantOK && err == nil {
		t.Fatalf("cosign verify %s passed on an altered signature:\n%s", ref, out)
	}
}

// alterSignature replaces the image's cosign signature manifest in the
// registry with one whose signature has one bit flipped, keeping the payload.
func alterSignature(t *testing.T, repo name.Repository, digest string, ropts []remote.Option) {
	tag, _ := mirror.SignatureTag(digest)
	img, err := remote.Image(repo.Tag(tag), ropts...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(m.Layers[0].Annotations[mirror.SignatureAnnotation])
	sig[len(sig)-1] ^= 0x01
	l, err := img.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := l.Compressed()
	payload, _ := io.ReadAll(rc)
	rc.Close()
	altered := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	altered, err = mutate.Append(altered, mutate.Addendum{
		Layer:       static.NewLayer(payload, mirror.SimpleSigningMediaType),
		Annotations: map[string]string{mirror.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag(tag), altered, ropts...); err != nil {
		t.Fatal(err)
	}
}
