package e2e

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/internal/testenv"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

// TestUpstreamAttachments: a vendor signs, attests and attaches an SBOM to
// its images with the real cosign CLIs — app-one with cosign v2 (.sig, .att,
// .sbom tags; the multi-arch index signed --recursive), app-two with cosign
// v3 (sigstore bundles as OCI 1.1 referrers) — and everything crosses into
// the isolated registry: cosign verify and verify-attestation pass there
// with the vendor's key, and cosign tree lists what it listed at the source
// (plus our own signature layer). Run against the distribution registry
// (no referrers API: referrers tag fallback) and the in-process registry
// (referrers API).
func TestUpstreamAttachments(t *testing.T) {
	t.Run("distribution registry, referrers tag", func(t *testing.T) {
		w := newWorld(t)
		ropts := []remote.Option{remote.WithAuthFromKeychain(w.src.Keychain()), remote.WithTransport(w.src.Transport())}
		testUpstreamAttachments(t, w.work, w.env, w.src.Host, w.dst.Host, ropts)
		// serve --require-signature accepts our sigstore-bundle signature
		// (app-two) as it accepts a .sig (app-one).
		cert := newGateCert(t, w.work)
		g := startGate(t, w.env, "--repo", w.path("isolated"), "--upstream", w.dst.Host+"/mirror", "--require-signature",
			"--tls-cert", cert.certFile, "--tls-key", cert.keyFile)
		for _, n := range []string{testimages.AppOne, testimages.AppTwo} {
			repo, tag, _ := strings.Cut(n, ":")
			if a := get(t, gateClient(cert.pool), "GET", "https://"+g.host+"/v2/"+repo+"/manifests/"+tag); a.status != 200 {
				t.Errorf("serve --require-signature: %s answers %d %s", n, a.status, a.body)
			}
		}
	})
	t.Run("in-process registry, referrers API", func(t *testing.T) {
		reg := func() string {
			s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
			t.Cleanup(s.Close)
			return strings.TrimPrefix(s.URL, "http://")
		}
		work := t.TempDir()
		env := []string{"HOME=" + work, "DOCKER_CONFIG=" + filepath.Join(work, "docker"), "COLDHARBOR_PASSWORD=e2e-password",
			"XDG_CACHE_HOME=" + filepath.Join(work, "cache")}
		testUpstreamAttachments(t, work, env, reg(), reg(), nil)
	})
}

// vendor runs the real cosign CLIs as an upstream vendor would.
type vendor struct {
	t          *testing.T
	dir        string
	env        []string
	cosign2    string
	cosign3    string
	key, pub   string
	provenance string
	sbom       string
}

func newVendor(t *testing.T, dir string, env []string) *vendor {
	c2, cenv := testenv.Cosign(t)
	c3, _ := testenv.Cosign3(t)
	v := &vendor{t: t, dir: dir, env: append(append(cenv, env...), "COSIGN_PASSWORD=vendor-password"), cosign2: c2, cosign3: c3,
		key: filepath.Join(dir, "vendor.key"), pub: filepath.Join(dir, "vendor.pub"),
		provenance: filepath.Join(dir, "provenance.json"), sbom: filepath.Join(dir, "sbom.spdx.json")}
	os.WriteFile(v.provenance, []byte(`{"buildType":"https://example.com/build/v1","builder":{"id":"https://example.com/ci"}}`), 0o644)
	os.WriteFile(v.sbom, []byte(`{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"app-one","dataLicense":"CC0-1.0","documentNamespace":"https://example.com/app-one","creationInfo":{"created":"2024-01-01T00:00:00Z","creators":["Tool: e2e"]},"packages":[]}`), 0o644)
	v.run(c2, "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "vendor"))
	return v
}

func (v *vendor) run(cosign string, args ...string) string {
	v.t.Helper()
	out, err := v.try(cosign, args...)
	if err != nil {
		v.t.Fatalf("%s %s: %v\n%s", filepath.Base(filepath.Dir(cosign)), strings.Join(args, " "), err, out)
	}
	return out
}

func (v *vendor) try(cosign string, args ...string) (string, error) {
	cmd := exec.CommandContext(v.t.Context(), cosign, args...)
	cmd.Env, cmd.Dir = v.env, v.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Flags that sign with a key and no transparency log, for each CLI.
var (
	noTlog2 = []string{"--tlog-upload=false", "--yes"}
	noTlog3 = []string{"--tlog-upload=false", "--use-signing-config=false", "--yes"}
)

func testUpstreamAttachments(t *testing.T, work string, env []string, srcHost, dstHost string, ropts []remote.Option) {
	ctx := context.Background()
	fix, err := testimages.New(1)
	if err != nil {
		t.Fatal(err)
	}
	digests, err := testimages.Push(ctx, srcHost, fix, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	at := func(host, n string) string {
		return host + "/" + strings.SplitN(n, ":", 2)[0] + "@" + digests[n].String()
	}
	v := newVendor(t, work, env)
	one, two, multi := at(srcHost, testimages.AppOne), at(srcHost, testimages.AppTwo), at(srcHost, testimages.MultiArch)
	v.run(v.cosign2, append([]string{"sign", "--key", v.key}, append(noTlog2, one)...)...)
	v.run(v.cosign2, append([]string{"attest", "--key", v.key, "--type", "slsaprovenance", "--predicate", v.provenance}, append(noTlog2, one)...)...)
	v.run(v.cosign2, "attach", "sbom", "--sbom", v.sbom, "--type", "spdx", one)
	v.run(v.cosign2, append([]string{"sign", "--recursive", "--key", v.key}, append(noTlog2, multi)...)...)
	v.run(v.cosign3, append([]string{"sign", "--key", v.key}, append(noTlog3, two)...)...)
	v.run(v.cosign3, append([]string{"attest", "--key", v.key, "--type", "slsaprovenance", "--predicate", v.provenance}, append(noTlog3, two)...)...)
	treeOne, treeTwo := v.run(v.cosign3, "tree", one), v.run(v.cosign3, "tree", two)

	dest := dstHost + "/mirror"
	bundlePath, approval, keyOf := exportAndSign(t, work, env, srcHost, dest, v.pub)
	out := must(t, env, "sign", bundlePath, "--repo", filepath.Join(work, "signer"), "--key", keyOf("targets"), "-o", approval, "--yes")
	for _, want := range []string{"1 signature, 1 SBOM, 1 provenance", "1 signature, 1 provenance", "3 signatures", "upstream signature (bundle) verified with key sha256:"} {
		if !strings.Contains(out, want) {
			t.Errorf("sign does not show %q:\n%s", want, out)
		}
	}
	out = must(t, env, "import", bundlePath, approval, "--repo", filepath.Join(work, "isolated"), "--registry", dest,
		"--snapshot-key", keyOf("snapshot"), "--timestamp-key", keyOf("timestamp"))
	t.Log(out)

	// In the isolated registry, with the vendor's key: cosign v2 and v3
	// verify the legacy signatures and attestation, v3 the sigstore bundles.
	dOne, dTwo := at(dest, testimages.AppOne), at(dest, testimages.AppTwo)
	v.run(v.cosign2, "verify", "--key", v.pub, "--insecure-ignore-tlog=true", dOne)
	v.run(v.cosign3, "verify", "--key", v.pub, "--insecure-ignore-tlog=true", dOne)
	v.run(v.cosign2, "verify-attestation", "--key", v.pub, "--insecure-ignore-tlog=true", "--type", "slsaprovenance", dOne)
	v.run(v.cosign3, "verify-attestation", "--key", v.pub, "--insecure-ignore-tlog=true", "--type", "slsaprovenance", dOne)
	v.run(v.cosign3, "verify", "--key", v.pub, "--insecure-ignore-tlog=true", dTwo)
	v.run(v.cosign3, "verify-attestation", "--key", v.pub, "--insecure-ignore-tlog=true", "--type", "slsaprovenance", dTwo)
	// Every platform manifest the vendor signed --recursive still verifies.
	v.run(v.cosign2, "verify", "--key", v.pub, "--insecure-ignore-tlog=true", at(dest, testimages.MultiArch))
	// Our own signature beside the vendor's, in the one .sig manifest.
	ours := publishedTarget(t, filepath.Join(work, "isolated"), "cosign.pub")
	v.run(v.cosign2, "verify", "--key", ours, "--insecure-ignore-tlog=true", dOne)
	// The vendor signed app-two only with a sigstore bundle: cosign v3 then
	// reads only bundles, so import's auto wrote ours as a bundle too, and
	// no .sig: never both formats of ours on one digest.
	v.run(v.cosign3, "verify", "--key", ours, "--insecure-ignore-tlog=true", dTwo)
	if _, err := v.try(v.cosign2, "triangulate", "--type", "signature", dTwo); err == nil {
		if out, _ := v.try(v.cosign3, "tree", dTwo); strings.Contains(out, ".sig") {
			t.Errorf("app-two has a .sig beside our sigstore bundle:\n%s", out)
		}
	}
	must(t, env, "verify", "--repo", filepath.Join(work, "isolated"), "--registry", dest, dest+"/"+testimages.AppOne, dest+"/"+testimages.AppTwo)

	// cosign tree lists what it listed at the source, plus our signature
	// layer under the .sig tag.
	for _, c := range []struct{ src, dst, tree string }{{one, dOne, treeOne}, {two, dTwo, treeTwo}} {
		after := v.run(v.cosign3, "tree", c.dst)
		t.Logf("cosign tree at the source:\n%s\ncosign tree after import:\n%s", c.tree, after)
		missing, extra := treeDiff(strings.ReplaceAll(c.tree, srcHost, dest), after)
		if len(missing) > 0 {
			t.Errorf("after import, cosign tree of %s lacks %v", c.dst, missing)
		}
		if !onlyOurSignature(extra) {
			t.Errorf("after import, cosign tree of %s has %v beyond the source's; want our one signature layer (and its .sig tag)", c.dst, extra)
		}
	}
}

// exportAndSign makes the keys, the repositories and the bundle of the
// three images; it returns the bundle, the approval path to write and a
// key URI maker.
func exportAndSign(t *testing.T, work string, env []string, srcHost, dest, vendorPub string) (string, string, func(string) string) {
	keyOf := func(k string) string { return "file:" + filepath.Join(work, "keys", k+".key") }
	os.MkdirAll(filepath.Join(work, "keys"), 0o700)
	for _, k := range []string{"root", "targets", "snapshot", "timestamp"} {
		must(t, env, "keys", "generate", keyOf(k))
	}
	must(t, env, "ceremony", "init", "--repo", filepath.Join(work, "signer"), "--root-key", keyOf("root"), "--targets-key", keyOf("targets"),
		"--snapshot-key", filepath.Join(work, "keys", "snapshot.key.pub"), "--timestamp-key", filepath.Join(work, "keys", "timestamp.key.pub"))
	for _, d := range []string{"isolated", "exporter"} {
		testfs.CopyDir(t, filepath.Join(work, "signer"), filepath.Join(work, d))
	}
	bundlePath := filepath.Join(work, "attached.tar")
	images := []string{srcHost + "/" + testimages.AppOne, srcHost + "/" + testimages.AppTwo, srcHost + "/" + testimages.MultiArch}
	// A key that signed none of them: refused before anything is written.
	wrong := filepath.Join(work, "keys", "root.key.pub")
	refused(t, env, "no upstream cosign signature verifies", append([]string{"export", "--repo", filepath.Join(work, "exporter"), "--dest", dest,
		"-o", bundlePath, "--verify-upstream-key", wrong}, images...)...)
	if _, err := os.Stat(bundlePath); err == nil {
		t.Fatal("a refused export wrote the bundle")
	}
	// The vendor's key (beside a wrong one) verifies cosign v2 .sig and v3
	// bundle signatures alike.
	out := must(t, env, append([]string{"export", "--repo", filepath.Join(work, "exporter"), "--dest", dest, "-o", bundlePath,
		"--verify-upstream-key", wrong, "--verify-upstream-key", vendorPub}, images...)...)
	t.Log(out)
	head := readHead(t, bundlePath)
	for _, img := range head.Index.Images {
		if len(img.Attachments) == 0 {
			t.Errorf("%s carries no attachment", img.Name)
		}
		if img.Name == testimages.AppOne && bundle.Summary(img.Attachments) != "1 signature, 1 SBOM, 1 provenance" {
			t.Errorf("app-one carries %s", bundle.Summary(img.Attachments))
		}
		want := map[string]string{testimages.AppOne: "legacy", testimages.AppTwo: "bundle", testimages.MultiArch: "legacy"}[img.Name]
		if img.Upstream == nil || img.Upstream.Format != want {
			t.Errorf("%s: upstream check %+v, want a %s signature verified", img.Name, img.Upstream, want)
		}
	}
	return bundlePath, filepath.Join(work, "approval.tar"), keyOf
}

// treeDiff compares cosign tree outputs line by line, ignoring the order
// of sections.
func treeDiff(before, after string) (missing, extra []string) {
	lines := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			// The glyphs before a layer depend on its place in the list.
			if l = strings.TrimLeft(strings.TrimSpace(l), "└├─│ "); l != "" {
				m[l] = true
			}
		}
		return m
	}
	b, a := lines(before), lines(after)
	for l := range b {
		if !a[l] {
			missing = append(missing, l)
		}
	}
	for l := range a {
		if !b[l] {
			extra = append(extra, l)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// onlyOurSignature: the lines cosign tree shows after import beyond the
// source's are one signature layer and its header: the .sig tag's when the
// vendor had none, or our sigstore bundle's referrer.
func onlyOurSignature(extra []string) bool {
	layers := 0
	for _, l := range extra {
		switch {
		case strings.Contains(l, "🍒"):
			layers++
		case strings.Contains(l, "Signatures for an image tag") && strings.HasSuffix(l, ".sig"):
		case strings.Contains(l, "https://sigstore.dev/cosign/sign/v1 artifacts via OCI referrer"):
		default:
			return false
		}
	}
	return layers == 1
}
