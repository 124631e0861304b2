package mirror

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

// upstream is what a vendor attaches to AppOne and to one platform of
// MultiArch at the source: a cosign .sig by its own key, a .att holding a
// provenance attestation, and SBOM referrers (OCI 1.1 subject).
type upstream struct {
	key                 *hsm.Key
	appOne, child       v1.Hash
	sbom, childSBOM     v1.Hash
	sig, att            v1.Hash
	sigLayerAnnotations map[string]string
}

const sbomDoc = `{"spdxVersion":"SPDX-2.3","name":"app-one","packages":[{"name":"busybox-marker-0123456789"}]}`

func attachUpstream(t *testing.T, host string, opts ...remote.Option) *upstream {
	t.Helper()
	u := &upstream{key: testkeys.New(t, "vendor")}
	repo, _ := name.NewRepository(host + "/demo/app-one")
	d, err := remote.Head(repo.Tag("1.0"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	u.appOne = d.Digest
	// cosign's signature layout, signed by the vendor's key.
	pl, _ := payload.Cosign{Image: repo.Digest(d.Digest.String())}.MarshalJSON()
	sig, err := u.key.Signer.SignMessage(bytes.NewReader(pl))
	if err != nil {
		t.Fatal(err)
	}
	sigImg, err := signatureImage(pl, []string{base64.StdEncoding.EncodeToString(sig)})
	if err != nil {
		t.Fatal(err)
	}
	u.sig = write(t, repo.Tag(bundle.CosignTag(d.Digest.String(), "sig")), sigImg, opts...)
	// A .att with a SLSA provenance (its DSSE content matters not here).
	att := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	att = mutate.ConfigMediaType(att, types.OCIConfigJSON)
	att, _ = mutate.Append(att, mutate.Addendum{Layer: static.NewLayer([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`), bundle.DSSEMediaType),
		Annotations: map[string]string{"predicateType": "https://slsa.dev/provenance/v1"}})
	u.att = write(t, repo.Tag(bundle.CosignTag(d.Digest.String(), "att")), att, opts...)
	u.sbom = pushSBOM(t, repo, *d, sbomDoc, opts...)
	// An SBOM on the amd64 manifest of the multi-arch index.
	mrepo, _ := name.NewRepository(host + "/demo/multiarch")
	idx, err := remote.Index(mrepo.Tag("1.0"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	u.child = im.Manifests[0].Digest
	u.childSBOM = pushSBOM(t, mrepo, im.Manifests[0], `{"spdxVersion":"SPDX-2.3","name":"multiarch-amd64"}`, opts...)
	return u
}

func pushSBOM(t *testing.T, repo name.Repository, subject v1.Descriptor, doc string, opts ...remote.Option) v1.Hash {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	// The artifact type is the config's media type, as older OCI 1.1
	// clients write it.
	img = mutate.ConfigMediaType(img, "application/spdx+json")
	img, _ = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte(doc), "application/spdx+json")})
	img = mutate.Subject(img, v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}).(v1.Image)
	h, _ := img.Digest()
	return write(t, repo.Digest(h.String()), img, opts...)
}

func write(t *testing.T, ref name.Reference, img v1.Image, opts ...remote.Option) v1.Hash {
	t.Helper()
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("writing %s: %v", ref, err)
	}
	h, _ := img.Digest()
	return h
}

// attachedSetup is a setup whose first bundle is imported, then a second
// bundle of AppOne and MultiArch carrying the upstream attachments.
func attachedSetup(t *testing.T, referrers bool) (*setup, *upstream, string, string) {
	s := newSetupReferrers(t, referrers)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	u := attachUpstream(t, s.srcHost)
	b, a := s.makeBundle(t, "att", testimages.AppOne, testimages.MultiArch)
	return s, u, b, a
}

// TestAttachmentsTravel: export lists every attachment against its subject
// (an image and a platform of an index), the signer is shown them, the
// signed targets cover them, and import pushes them after their subjects,
// merges the vendor's .sig with ours, and reads everything back.
func TestAttachmentsTravel(t *testing.T) {
	t.Run("referrers API", func(t *testing.T) { testAttachmentsTravel(t, true) })
	t.Run("fallback tag", func(t *testing.T) { testAttachmentsTravel(t, false) })
}

func testAttachmentsTravel(t *testing.T, referrers bool) {
	s, u, b, a := attachedSetup(t, referrers)
	bf, err := bundle.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	imgs := bf.Images()
	bf.Close()
	if got := bundle.Summary(imgs[0].Attachments); got != "1 signature, 1 SBOM, 1 provenance" {
		t.Errorf("app-one attachments: %q", got)
	}
	if len(imgs[1].Attachments) != 1 || imgs[1].Attachments[0].Subject != u.child.String() {
		t.Errorf("multiarch attachments: %+v", imgs[1].Attachments)
	}
	repo, _ := name.NewRepository(s.dest + "/demo/app-one")
	// Something the destination already attaches to the image (a local
	// scan): the referrers (or their fallback tag) keep it.
	local := pushSBOM(t, repo, v1.Descriptor{MediaType: types.DockerManifestSchema2, Digest: u.appOne, Size: 1}, `{"local":"scan"}`)
	res, err := s.importPair(b, a)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attachments != 3 { // .att, two SBOMs; the .sig merged into ours
		t.Errorf("attachments pushed: %d", res.Attachments)
	}
	refs, err := remote.Referrers(repo.Digest(u.appOne.String()))
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := refs.IndexManifest(); len(im.Manifests) != 2 || !hasDigest(im.Manifests, u.sbom) || !hasDigest(im.Manifests, local) {
		t.Errorf("referrers of app-one at the destination: %+v", im)
	}
	if d, err := remote.Head(repo.Tag(bundle.CosignTag(u.appOne.String(), "att"))); err != nil || d.Digest != u.att {
		t.Errorf(".att at the destination: %v %v", d, err)
	}
	sig, err := remote.Image(repo.Tag(bundle.CosignTag(u.appOne.String(), "sig")))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := sig.Manifest(); len(m.Layers) != 2 {
		t.Errorf("the .sig holds %d layers, want the vendor's and ours", len(m.Layers))
	}
	mrepo, _ := name.NewRepository(s.dest + "/demo/multiarch")
	refs, err = remote.Referrers(mrepo.Digest(u.child.String()))
	if im, _ := refs.IndexManifest(); err != nil || len(im.Manifests) != 1 || im.Manifests[0].Digest != u.childSBOM {
		t.Errorf("referrers of the amd64 child: %+v %v", im, err)
	}
}

// An attachment the signed targets list but the bundle lacks (the bundle
// re-written without it, the approval's unsigned binding edited to match)
// is refused naming it; so is an attachment whose blob was altered. Neither
// pushes anything.
func TestAttachmentMissingOrAlteredRefused(t *testing.T) {
	t.Run("removed", func(t *testing.T) {
		s, u, b, a := attachedSetup(t, true)
		dropAttachment(t, b, a, u.sbom.String())
		before := testfs.TreeHash(t, s.path("isolated"), "lock")
		_, err := s.importPair(b, a)
		if !trust.IsVerification(err) || !strings.Contains(err.Error(), u.sbom.String()) || !strings.Contains(err.Error(), "not in the bundle") {
			t.Fatalf("import without an attachment: %v", err)
		}
		if testfs.TreeHash(t, s.path("isolated"), "lock") != before {
			t.Fatal("a refused import changed the repository")
		}
	})
	t.Run("altered", func(t *testing.T) {
		s, u, b, a := attachedSetup(t, true)
		raw, _ := os.ReadFile(b)
		i := bytes.Index(raw, []byte("busybox-marker-0123456789"))
		if i < 0 {
			t.Fatal("SBOM not found in the bundle")
		}
		raw[i] = 'B'
		os.WriteFile(b, raw, 0o644)
		_, err := s.importPair(b, a)
		if !trust.IsVerification(err) || !strings.Contains(err.Error(), u.sbom.String()) || !strings.Contains(err.Error(), "altered") {
			t.Fatalf("import with an altered attachment: %v", err)
		}
		repo, _ := name.NewRepository(s.dest + "/demo/app-one")
		if _, err := remote.Head(repo.Digest(u.sbom.String())); err == nil {
			t.Fatal("the refused import pushed the attachment")
		}
		if refs, err := remote.Referrers(repo.Digest(u.appOne.String())); err == nil {
			if im, _ := refs.IndexManifest(); len(im.Manifests) != 0 {
				t.Fatal("the refused import pushed a referrer")
			}
		}
	})
}

// dropAttachment rewrites a bundle without one attachment (index entry and
// manifest blob) and points the approval's unsigned binding at the new
// index, as someone with the media could.
func dropAttachment(t *testing.T, bundlePath, approvalPath, digest string) {
	t.Helper()
	rewriteBundle(t, bundlePath, approvalPath, func(idx *bundle.Index) {
		for i := range idx.Images {
			var keep []bundle.Attachment
			for _, at := range idx.Images[i].Attachments {
				if at.Digest != digest {
					keep = append(keep, at)
				}
			}
			idx.Images[i].Attachments = keep
		}
		var members []bundle.Member
		for _, m := range idx.Members {
			if m.Name != bundle.BlobName(digest) {
				members = append(members, m)
			}
		}
		idx.Members = members
	})
}

// rewriteBundle re-writes a bundle with an edited index (members it no
// longer lists are dropped) and re-binds the approval to it.
func rewriteBundle(t *testing.T, bundlePath, approvalPath string, edit func(*bundle.Index)) {
	t.Helper()
	b, err := bundle.Open(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	idx := *b.Head.Index
	b.Close()
	data := tarMembers(t, bundlePath)
	edit(&idx)
	raw, err := bundle.EncodeIndex(&idx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := bundle.NewWriter(&buf, &idx, raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Members {
		if err := w.Write(bundle.File{Name: m.Name, Data: data[m.Name]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bundlePath, buf.Bytes(), 0o644)
	af, err := bundle.OpenApproval(approvalPath)
	if err != nil {
		t.Fatal(err)
	}
	af.Approval.Bundle = bundle.BundleRef{IndexSHA256: bundle.MemberOf(bundle.IndexName, raw).SHA256, IndexSize: int64(len(raw))}
	rewriteApproval(t, approvalPath, af, af.Roots)
}

func tarMembers(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name], _ = io.ReadAll(tr)
	}
}

// lossy is a registry that answers a manifest PUT with success and drops
// it: import's read-back must catch it and publish nothing.
type lossy struct {
	h    http.Handler
	drop string // digest whose manifest PUT is dropped
}

func (l *lossy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/"+l.drop) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Docker-Content-Digest", l.drop)
		w.WriteHeader(http.StatusCreated)
		return
	}
	l.h.ServeHTTP(w, r)
}

// A registry that loses an attachment it accepted is caught by the
// read-back: the import fails (not a refusal), nothing is published, and
// the same import against a sound registry completes.
func TestReadBackCatchesLostAttachment(t *testing.T) {
	s, u, b, a := attachedSetup(t, true)
	before := testfs.TreeHash(t, s.path("isolated"), "lock")
	sound := s.dst.h
	s.dst.h = &lossy{h: sound, drop: u.sbom.String()}
	_, err := s.importPair(b, a)
	if err == nil || trust.IsVerification(err) || !strings.Contains(err.Error(), u.sbom.String()) || !strings.Contains(err.Error(), "does not hold") {
		t.Fatalf("import into a registry that drops the SBOM: %v", err)
	}
	if testfs.TreeHash(t, s.path("isolated"), "lock") != before {
		t.Fatal("TUF was published though the registry lacks an attachment")
	}
	s.dst.h = sound
	if _, err := s.importPair(b, a); err != nil {
		t.Fatalf("the same import again: %v", err)
	}
}

func hasDigest(descs []v1.Descriptor, h v1.Hash) bool {
	for _, d := range descs {
		if d.Digest == h {
			return true
		}
	}
	return false
}

// --attachments and --attachment-type choose what travels.
func TestAttachmentFilters(t *testing.T) {
	s := newSetupReferrers(t, true)
	attachUpstream(t, s.srcHost)
	for _, tc := range []struct {
		mode  string
		types []string
		want  string
	}{
		{"", nil, "1 signature, 1 SBOM, 1 provenance"},
		{export.AttachSignatures, nil, "1 signature"},
		{export.AttachNone, nil, ""},
		{"", []string{"application/spdx+json"}, "1 SBOM"},
		{"", []string{bundle.DSSEMediaType}, "1 provenance"},
	} {
		var buf bytes.Buffer
		res, err := export.Write(t.Context(), &buf, export.Options{Repo: s.signer, Destination: s.dest,
			Images: []export.ImageSpec{{Source: s.srcHost + "/" + testimages.AppOne}}, Attachments: tc.mode, AttachmentTypes: tc.types})
		if err != nil {
			t.Fatal(err)
		}
		if got := bundle.Summary(res.Index.Images[0].Attachments); got != tc.want {
			t.Errorf("--attachments %q --attachment-type %v: %q, want %q", tc.mode, tc.types, got, tc.want)
		}
	}
	if _, err := export.Write(t.Context(), io.Discard, export.Options{Repo: s.signer, Destination: s.dest,
		Images: []export.ImageSpec{{Source: s.srcHost + "/" + testimages.AppOne}}, Attachments: "some"}); err == nil {
		t.Fatal("--attachments some was accepted")
	}
}

// --verify-upstream-key: the vendor's key verifies its .sig and is
// recorded (signed with the target, shown to the signer); any other key
// is refused before a byte is written.
func TestVerifyUpstreamKey(t *testing.T) {
	s := newSetupReferrers(t, true)
	u := attachUpstream(t, s.srcHost)
	pem, err := cryptoutils.MarshalPublicKeyToPEM(u.key.Public)
	if err != nil {
		t.Fatal(err)
	}
	vendorKey, err := export.LoadUpstreamKey(string(pem))
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, _ := cryptoutils.MarshalPublicKeyToPEM(testkeys.New(t, "other").Public)
	other, _ := export.LoadUpstreamKey(string(otherPEM))
	opts := export.Options{Repo: s.signer, Destination: s.dest, Images: []export.ImageSpec{{Source: s.srcHost + "/" + testimages.AppOne}}}
	var buf bytes.Buffer
	opts.UpstreamKeys = []export.UpstreamKey{other}
	if _, err := export.Write(t.Context(), &buf, opts); !trust.IsVerification(err) || !strings.Contains(err.Error(), "no upstream cosign signature verifies") || buf.Len() != 0 {
		t.Fatalf("export with a key that signed nothing: %v (%d bytes written)", err, buf.Len())
	}
	opts.UpstreamKeys = []export.UpstreamKey{other, vendorKey}
	res, err := export.Write(t.Context(), &buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	up := res.Index.Images[0].Upstream
	if up == nil || up.Key != vendorKey.ID || up.Signature != u.sig.String() || up.Format != "legacy" {
		t.Fatalf("upstream check %+v, want key %s and signature %s", up, vendorKey.ID, u.sig)
	}
	p, err := approve.MakePlan(t.Context(), bytes.NewReader(buf.Bytes()), "b.tar", s.signer)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Changes[0].Attached; !strings.Contains(got, "verified with key "+vendorKey.ID) {
		t.Fatalf("the signer is shown %q", got)
	}
}
