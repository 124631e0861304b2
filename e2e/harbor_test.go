package e2e

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/internal/testenv"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testharbor"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testregistry"
	"github.com/coldharbor/coldharbor/mirror"
)

// TestHarbor imports into a real Harbor of each version the kit holds,
// with a project robot's credentials, as a user would: every image and
// every platform manifest shows signature.cosign, pulls by digest succeed
// with the project's cosign policy on, an image pushed around the import
// answers 412, and cosign and coldharbor verify through Harbor. The two
// versions run at once, each on ports and a state folder of its own.
func TestHarbor(t *testing.T) {
	start := time.Now()
	// Skip (fail under CI=true) before starting anything when a part is missing.
	testharbor.KitScript(t)
	testenv.Crane(t)
	testenv.Cosign(t)
	src := testregistry.Start(t)
	fix, err := testimages.New(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testimages.Push(t.Context(), src.Host, fix, remote.WithAuthFromKeychain(src.Keychain()), remote.WithTransport(src.Transport())); err != nil {
		t.Fatal(err)
	}
	t.Run("versions", func(t *testing.T) {
		for _, v := range testharbor.Versions() {
			t.Run(v, func(t *testing.T) {
				t.Parallel()
				harborImport(t, v, src)
			})
		}
	})
	t.Logf("Harbor part: %s for %v, run at once", time.Since(start).Round(100*time.Millisecond), testharbor.Versions())
}

// harborWorld is one Harbor, the signer's and the isolated side's TUF
// repositories, and the robot's Docker config.
type harborWorld struct {
	h    *testharbor.Harbor
	work string
	env  []string // for coldharbor, crane and cosign: robot credentials
	dest string   // HOST/mirror
}

func (w *harborWorld) path(p ...string) string {
	return filepath.Join(append([]string{w.work}, p...)...)
}

func (w *harborWorld) key(k string) string { return "file:" + w.path("keys", k+".key") }

func harborImport(t *testing.T, version string, src *testregistry.Registry) {
	t0 := time.Now()
	h := testharbor.Start(t, version)
	t.Logf("Harbor %s up on %s in %s", version, h.Host, time.Since(t0).Round(100*time.Millisecond))
	defer func() {
		if t.Failed() {
			t.Logf("harbor_core said (tail):\n%s", h.Logs())
		}
	}()
	h.CreateProject(t, "mirror")
	user, secret := h.CreateRobot(t, "mirror", "importer")
	w := &harborWorld{h: h, work: t.TempDir(), dest: h.Host + "/mirror"}
	w.env = harborEnv(t, w.work, src, h, user, secret)
	w.ceremony(t)

	srcRef := func(n string) string { return src.Host + "/" + n }
	must(t, w.env, "export", "--repo", w.path("exporter"), "--dest", w.dest, "-o", w.path("b1.tar"),
		srcRef(testimages.AppOne)+"=app/one:1", srcRef(testimages.MultiArch)+"=app/multi:1")
	head := readHead(t, w.path("b1.tar"))
	signOut := must(t, w.env, "sign", w.path("b1.tar"), "--repo", w.path("signer"), "--key", w.key("targets"), "-o", w.path("a1.tar"), "--yes")
	if !strings.Contains(signOut, "and 4 cosign signature(s)") {
		t.Errorf("sign does not show 4 signatures (app/one, the index, two platforms):\n%s", signOut)
	}
	res := w.importBundle(t, "b1.tar", "a1.tar")
	if res.SignatureFormat.Chosen != "legacy" || !strings.HasPrefix(res.SignatureFormat.Target, "harbor "+version) {
		t.Errorf("signature format %+v: want legacy, target harbor %s", res.SignatureFormat, version)
	}
	want := signedDigests(head)
	w.checkAccessories(t, want, true)

	// The project's cosign policy on: every image and every platform pulls
	// by digest; an image pushed around the import does not.
	h.SetCosignPolicy(t, "mirror", true)
	w.pullAll(t, head)
	w.unsignedRefused(t, user, secret)
	w.verifyThrough(t, head)
	w.throughGate(t, head)

	// Importing again, and a later bundle re-tagging the same images, add
	// no signature accessory.
	r := run(t, w.env, w.importArgs("b1.tar", "a1.tar")...)
	if r.code != 0 && !(r.code == 3 && strings.Contains(r.stderr, "not newer")) {
		t.Fatalf("the same import again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	must(t, w.env, "export", "--repo", w.path("exporter"), "--dest", w.dest, "-o", w.path("b2.tar"),
		srcRef(testimages.AppOne)+"=app/one:2", srcRef(testimages.MultiArch)+"=app/multi:2")
	must(t, w.env, "sign", w.path("b2.tar"), "--repo", w.path("signer"), "--key", w.key("targets"), "-o", w.path("a2.tar"), "--yes")
	res2 := w.importBundle(t, "b2.tar", "a2.tar")
	if res2.SignaturesPresent != res2.Signatures {
		t.Errorf("re-tagging import wrote %d of %d signature manifests again; all were in place", res2.Signatures-res2.SignaturesPresent, res2.Signatures)
	}
	w.checkAccessories(t, want, false)
	if !versionBefore215(version) {
		w.bundleSignatures(t, src, srcRef(testimages.AppTwo)+"=app/two:1")
	}
	harborFacts(t, h)
}

func versionBefore215(v string) bool { return v < "v2.15" }

// bundleSignatures imports an image with --signature-format bundle into a
// Harbor that reads sigstore bundles (2.15 and later): its referrer is a
// signature.cosign accessory, the only one, and with the cosign policy on
// the image pulls by digest; cosign v3 verifies it through Harbor. The
// image carries an SBOM referrer from the source: the import reads it
// back with the policy on, and Harbor lists it.
func (w *harborWorld) bundleSignatures(t *testing.T, src *testregistry.Registry, image string) {
	t.Helper()
	sbom := pushSourceSBOM(t, src, strings.SplitN(image, "=", 2)[0])
	must(t, w.env, "export", "--repo", w.path("exporter"), "--dest", w.dest, "-o", w.path("b3.tar"), "--signature-format", "bundle", image)
	must(t, w.env, "sign", w.path("b3.tar"), "--repo", w.path("signer"), "--key", w.key("targets"), "-o", w.path("a3.tar"), "--yes")
	r := run(t, w.env, append(w.importArgs("b3.tar", "a3.tar"), "--signature-format", "bundle")...)
	if r.code != 0 {
		t.Fatalf("import --signature-format bundle: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var res mirror.ImportResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.SignatureFormat.Bundles != 1 {
		t.Fatalf("import --signature-format bundle: %v %+v", err, res.SignatureFormat)
	}
	head := readHead(t, w.path("b3.tar"))
	digest := head.Index.Images[0].Digest
	var types []string
	for _, a := range w.h.Accessories(t, "mirror", "app/two", digest) {
		types = append(types, a.Type+" "+a.Digest)
	}
	t.Logf("Harbor %s: app/two accessories %v (SBOM referrer %s)", w.h.Version, types, sbom)
	if len(types) != 2 || !slices.ContainsFunc(types, func(s string) bool { return strings.HasPrefix(s, "signature.cosign ") }) ||
		!slices.ContainsFunc(types, func(s string) bool { return strings.HasSuffix(s, sbom.String()) }) {
		t.Errorf("Harbor %s: app/two accessories %v, want our signature.cosign and the SBOM", w.h.Version, types)
	}
	if out, err := w.crane(t, "pull", w.dest+"/app/two@"+digest, w.path("pull3.tar")); err != nil {
		t.Errorf("crane pull of a bundle-signed image with the policy on: %v\n%s", err, out)
	}
	cosign3, cenv := testenv.Cosign3(t)
	cmd := exec.CommandContext(t.Context(), cosign3, "verify", "--key", publishedTarget(t, w.path("isolated"), "cosign.pub"), "--insecure-ignore-tlog=true", w.dest+"/app/two@"+digest)
	cmd.Env = append(cenv, w.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("cosign v3 verify through Harbor %s: %v\n%s", w.h.Version, err, out)
	}
}

// harborEnv writes a Docker config holding the source registry's
// credentials and the robot's for Harbor, and returns the environment
// every tool of the test runs with.
func harborEnv(t *testing.T, dir string, src *testregistry.Registry, h *testharbor.Harbor, user, secret string) []string {
	cfgDir, caFile, err := testregistry.WriteClientConfig(dir, map[string]*testregistry.Registry{src.Host: src})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]map[string]string `json:"auths"`
	}
	b, err := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auths[h.Host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))}
	if b, err = json.Marshal(cfg); err == nil {
		err = os.WriteFile(filepath.Join(cfgDir, "config.json"), b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	return []string{"HOME=" + dir, "DOCKER_CONFIG=" + cfgDir, "SSL_CERT_FILE=" + caFile,
		"COLDHARBOR_PASSWORD=e2e-password", "XDG_CACHE_HOME=" + filepath.Join(dir, "cache")}
}

// ceremony makes the keys, the signer's repository and its copies on the
// exporter's and the isolated side.
func (w *harborWorld) ceremony(t *testing.T) {
	os.MkdirAll(w.path("keys"), 0o700)
	for _, k := range []string{"root", "targets", "snapshot", "timestamp"} {
		must(t, w.env, "keys", "generate", w.key(k))
	}
	must(t, w.env, "ceremony", "init", "--repo", w.path("signer"), "--root-key", w.key("root"), "--targets-key", w.key("targets"),
		"--snapshot-key", w.path("keys", "snapshot.key.pub"), "--timestamp-key", w.path("keys", "timestamp.key.pub"))
	testfs.CopyDir(t, w.path("signer"), w.path("isolated"))
	testfs.CopyDir(t, w.path("signer"), w.path("exporter"))
}

func (w *harborWorld) importArgs(b, a string) []string {
	return []string{"--verbose", "import", w.path(b), w.path(a), "--repo", w.path("isolated"), "--registry", w.dest,
		"--snapshot-key", w.key("snapshot"), "--timestamp-key", w.key("timestamp"), "--output", "json"}
}

func (w *harborWorld) importBundle(t *testing.T, b, a string) mirror.ImportResult {
	t.Helper()
	r := run(t, w.env, w.importArgs(b, a)...)
	if r.code != 0 {
		t.Fatalf("import %s: exit %d\n%s%s", b, r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "signature format") || !strings.Contains(r.stderr, "reason=") {
		t.Errorf("--verbose does not show the signature format decision:\n%s", r.stderr)
	}
	var res mirror.ImportResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("import --output json: %v\n%s", err, r.stdout)
	}
	t.Logf("import %s: %d signature manifests (%d already there), format %+v", b, res.Signatures, res.SignaturesPresent, res.SignatureFormat)
	return res
}

// signedDigests maps each repository in Harbor's project (app/one) to the
// digests import signs there: each image's and each platform manifest's.
func signedDigests(head *bundle.Head) map[string][]string {
	out := map[string][]string{}
	for _, img := range head.Index.Images {
		repo, _, _ := strings.Cut(img.Name, ":")
		for _, sd := range img.SignedDigests() {
			out[repo] = append(out[repo], sd.Digest)
		}
	}
	return out
}

// checkAccessories asserts, from Harbor's API, that every signed digest has
// exactly one accessory, of type signature.cosign, and logs Harbor's list.
func (w *harborWorld) checkAccessories(t *testing.T, want map[string][]string, show bool) {
	t.Helper()
	for repo, digests := range want {
		arts := w.h.Artifacts(t, "mirror", repo)
		for _, d := range digests {
			accs := w.h.Accessories(t, "mirror", repo, d)
			if len(accs) != 1 || accs[0].Type != "signature.cosign" || accs[0].SubjectDigest != d {
				t.Errorf("Harbor %s: mirror/%s@%s has accessories %+v, want one signature.cosign", w.h.Version, repo, d, accs)
			}
		}
		if show {
			for _, a := range arts {
				var tags []string
				for _, tg := range a.Tags {
					tags = append(tags, tg.Name)
				}
				t.Logf("Harbor %s artifact mirror/%s@%s tags %v (%s)", w.h.Version, repo, a.Digest, tags, a.MediaType)
				for _, ref := range a.References {
					for _, acc := range w.h.Accessories(t, "mirror", repo, ref.ChildDigest) {
						t.Logf("  child %s accessory %s %s", ref.ChildDigest, acc.Type, acc.Digest)
					}
				}
				for _, acc := range a.Accessories {
					t.Logf("  accessory %s %s", acc.Type, acc.Digest)
				}
			}
		}
	}
}

// crane runs the pinned crane with the robot's credentials.
func (w *harborWorld) crane(t *testing.T, args ...string) (string, error) {
	cmd := exec.CommandContext(t.Context(), testenv.Crane(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, w.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// pullAll pulls every image and every platform manifest by digest, as
// docker and containerd do, with the cosign policy on.
func (w *harborWorld) pullAll(t *testing.T, head *bundle.Head) {
	t.Helper()
	for _, img := range head.Index.Images {
		repo, tag, _ := strings.Cut(img.Name, ":")
		ref := w.dest + "/" + repo
		if out, err := w.crane(t, "manifest", ref+":"+tag); err != nil {
			t.Errorf("crane manifest %s:%s with the policy on: %v\n%s", ref, tag, err, out)
		}
		for _, sd := range img.SignedDigests() {
			args := []string{"pull", ref + "@" + sd.Digest, w.path("pull.tar")}
			if sd.Digest == img.Digest && len(img.Children) > 0 {
				args = []string{"manifest", ref + "@" + sd.Digest}
			}
			if out, err := w.crane(t, args...); err != nil {
				t.Errorf("crane %s with the policy on: %v\n%s", strings.Join(args[:2], " "), err, out)
			}
		}
	}
}

// unsignedRefused pushes an image with the robot's credentials, around the
// import, and expects Harbor's policy to refuse its pull with 412.
func (w *harborWorld) unsignedRefused(t *testing.T, user, secret string) {
	t.Helper()
	repo, err := name.NewRepository(w.dest + "/app/unsigned")
	if err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(256, 1)
	auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: user, Password: secret}))
	if err := remote.Write(repo.Tag("1"), img, auth); err != nil {
		t.Fatal(err)
	}
	out, err := w.crane(t, "manifest", repo.Tag("1").String())
	if err == nil || !strings.Contains(out, "PROJECTPOLICYVIOLATION: The image is not signed by cosign") {
		t.Errorf("crane pulled an unsigned image with the policy on: %v\n%s", err, out)
	}
	_, err = remote.Get(repo.Tag("1"), auth)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("an unsigned image with the policy on: %v, want 412", err)
	}
}

// verifyThrough runs the pinned cosign CLI on every signed digest and
// coldharbor verify on every image, through Harbor with the policy on.
func (w *harborWorld) verifyThrough(t *testing.T, head *bundle.Head) {
	t.Helper()
	cosignPub := publishedTarget(t, w.path("isolated"), "cosign.pub")
	cosign, env := testenv.Cosign(t)
	var refs []string
	for _, img := range head.Index.Images {
		repo, _, _ := strings.Cut(img.Name, ":")
		refs = append(refs, w.dest+"/"+img.Name)
		for _, sd := range img.SignedDigests() {
			ref := w.dest + "/" + repo + "@" + sd.Digest
			cmd := exec.CommandContext(t.Context(), cosign, "verify", "--key", cosignPub, "--insecure-ignore-tlog=true", "--allow-http-registry", ref)
			cmd.Env = append(env, w.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("cosign verify %s through Harbor %s: %v\n%s", ref, w.h.Version, err, out)
			}
		}
	}
	out := must(t, w.env, append([]string{"verify", "--repo", w.path("isolated"), "--registry", w.dest}, refs...)...)
	for _, r := range append(refs, "platform linux/amd64", "platform linux/arm64") {
		if !strings.Contains(out, r) {
			t.Errorf("coldharbor verify does not report %s:\n%s", r, out)
		}
	}
}

// harborFacts proves what import relies on, in a project without the
// policy: a signature manifest PUT by digest is never recorded; one PUT by
// tag before its image is linked when the image arrives; a second,
// different manifest under the same tag leaves two accessories (so import
// must not replace one that already holds its signatures).
func harborFacts(t *testing.T, h *testharbor.Harbor) {
	h.CreateProject(t, "facts")
	auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: testharbor.AdminUser, Password: testharbor.AdminPassword}))
	repo, err := name.NewRepository(h.Host + "/facts/app")
	if err != nil {
		t.Fatal(err)
	}
	push := func(ref name.Reference, img v1.Image) {
		t.Helper()
		if err := remote.Write(ref, img, auth); err != nil {
			t.Fatal(err)
		}
	}
	sigTypes := func(digest string) []string {
		var out []string
		for _, a := range h.Accessories(t, "facts", "app", digest) {
			out = append(out, a.Type)
		}
		return out
	}
	// By digest: never an accessory.
	img, d := randomImage(t)
	push(repo.Tag("by-digest"), img)
	sig := signatureManifest(t, d, "c2lnbmF0dXJlLTE=")
	sd, _ := sig.Digest()
	push(repo.Digest(sd.String()), sig)
	if got := sigTypes(d); len(got) != 0 {
		t.Errorf("Harbor %s recorded a signature PUT by digest: %v", h.Version, got)
	}
	// By tag, then a different manifest under the same tag: two accessories.
	tag, _ := mirror.SignatureTag(d)
	push(repo.Tag(tag), sig)
	push(repo.Tag(tag), signatureManifest(t, d, "c2lnbmF0dXJlLTI="))
	if got := sigTypes(d); !slices.Equal(got, []string{"signature.cosign", "signature.cosign"}) {
		t.Errorf("Harbor %s after a .sig tag was moved: accessories %v, want the old and the new", h.Version, got)
	}
	// Before its image: linked once the image arrives.
	img2, d2 := randomImage(t)
	tag2, _ := mirror.SignatureTag(d2)
	push(repo.Tag(tag2), signatureManifest(t, d2, "c2lnbmF0dXJlLTM="))
	push(repo.Tag("later"), img2)
	if got := sigTypes(d2); !slices.Equal(got, []string{"signature.cosign"}) {
		t.Errorf("Harbor %s: a .sig pushed before its image: accessories %v, want one signature.cosign", h.Version, got)
	}
}

func randomImage(t *testing.T) (v1.Image, string) {
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return img, d.String()
}

// signatureManifest is a cosign signature manifest for digest, with sig as
// its (unverified: Harbor never verifies) signature annotation.
func signatureManifest(t *testing.T, digest, sig string) v1.Image {
	payload := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":"facts/app"},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, digest)
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte(payload), mirror.SimpleSigningMediaType),
		Annotations: map[string]string{mirror.SignatureAnnotation: sig}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushSourceSBOM attaches an SPDX SBOM to ref's digest in the source as an
// OCI 1.1 referrer (the distribution registry keeps it under the
// referrers tag).
func pushSourceSBOM(t *testing.T, src *testregistry.Registry, ref string) v1.Hash {
	t.Helper()
	opts := []remote.Option{remote.WithAuthFromKeychain(src.Keychain()), remote.WithTransport(src.Transport())}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, "application/spdx+json")
	img, _ = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte(`{"spdxVersion":"SPDX-2.3","name":"app-two"}`), "application/spdx+json")})
	img = mutate.Subject(img, v1.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest}).(v1.Image)
	h, _ := img.Digest()
	if err := remote.Write(r.Context().Digest(h.String()), img, opts...); err != nil {
		t.Fatal(err)
	}
	return h
}
