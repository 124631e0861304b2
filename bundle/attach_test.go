package bundle

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestClassify(t *testing.T) {
	layer := func(_ string, ann map[string]string) v1.Descriptor {
		return v1.Descriptor{MediaType: "x", Annotations: ann}
	}
	for _, tc := range []struct {
		name string
		m    AttachmentManifest
		tag  string
		want string
	}{
		{"cosign .sig with two layers", AttachmentManifest{Layers: []v1.Descriptor{layer("", nil), layer("", nil)}}, "sha256-ab.sig", "signature,signature"},
		{"cosign .att: provenance and SBOM", AttachmentManifest{Layers: []v1.Descriptor{
			layer("", map[string]string{"predicateType": "https://slsa.dev/provenance/v1"}),
			layer("", map[string]string{"predicateType": "https://spdx.dev/Document"})}}, "sha256-ab.att", "provenance,sbom"},
		{"cosign .att: custom predicate", AttachmentManifest{Layers: []v1.Descriptor{layer("", map[string]string{"predicateType": "https://example.com/x"})}}, "sha256-ab.att", "attestation"},
		{"cosign .sbom", AttachmentManifest{Layers: []v1.Descriptor{layer("", nil)}}, "sha256-ab.sbom", "sbom"},
		{"cosign v3 signature bundle", AttachmentManifest{ArtifactType: SigstoreBundleType, Annotations: map[string]string{bundlePredicateAnnotation: CosignSignPredicate}}, "", "signature"},
		{"cosign v3 attestation bundle", AttachmentManifest{ArtifactType: SigstoreBundleType, Annotations: map[string]string{bundlePredicateAnnotation: "https://cosign.sigstore.dev/attestation/vuln/v1"}}, "", "vulnerability report"},
		{"SPDX referrer by config type", AttachmentManifest{Config: v1.Descriptor{MediaType: "application/spdx+json"}}, "", "sbom"},
		{"CycloneDX referrer", AttachmentManifest{ArtifactType: "application/vnd.cyclonedx+json"}, "", "sbom"},
		{"unknown referrer", AttachmentManifest{ArtifactType: "application/vnd.example.thing"}, "", "other"},
		{"empty .sig", AttachmentManifest{}, "sha256-ab.sig", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(Classify(&tc.m, tc.tag), ","); got != tc.want {
				t.Fatalf("Classify = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	atts := []Attachment{{Kinds: []string{KindSignature, KindSignature}}, {Kinds: []string{KindSBOM}}, {Kinds: []string{KindProvenance}}}
	if got := Summary(atts); got != "2 signatures, 1 SBOM, 1 provenance" {
		t.Fatalf("Summary = %q", got)
	}
	if got := Summary(nil); got != "" {
		t.Fatalf("Summary(nil) = %q", got)
	}
}

// Hostile attachment lists in an index are refused before anything else
// reads them.
func TestCheckAttachmentsRefuses(t *testing.T) {
	subj := "sha256:" + strings.Repeat("a", 64)
	dig := "sha256:" + strings.Repeat("b", 64)
	good := Attachment{Subject: subj, Digest: dig, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 10, Kinds: []string{KindSBOM}}
	listed := map[string]bool{BlobName(dig): true}
	if err := checkAttachments(Image{Name: "a/b:1", Attachments: []Attachment{good}}, listed); err != nil {
		t.Fatalf("a good attachment: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Attachment)
		want string
	}{
		{"bad subject", func(a *Attachment) { a.Subject = "sha256:AB" }, "digests must be"},
		{"self", func(a *Attachment) { a.Subject = a.Digest }, "attached to itself"},
		{"size", func(a *Attachment) { a.Size = MaxManifestSize + 1 }, "out of range"},
		{"not listed", func(a *Attachment) { a.Digest = "sha256:" + strings.Repeat("c", 64) }, "not in the bundle"},
		{"foreign tag", func(a *Attachment) { a.Tag = "latest" }, "not cosign's"},
		{"tag of another digest", func(a *Attachment) { a.Tag = CosignTag(dig, "sig") }, "not cosign's"},
		{"no kinds", func(a *Attachment) { a.Kinds = nil }, "kinds"},
		{"unknown kind", func(a *Attachment) { a.Kinds = []string{"malware"} }, "unknown kind"},
		{"escape sequence", func(a *Attachment) { a.ArtifactType = "x\x1b[2J" }, "unprintable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := good
			tc.edit(&a)
			err := checkAttachments(Image{Name: "a/b:1", Attachments: []Attachment{a}}, listed)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if err := checkAttachments(Image{Name: "a/b:1", Attachments: []Attachment{good, good}}, listed); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestCheckUpstreamRefuses(t *testing.T) {
	img := Image{Name: "a/b:1", Digest: "sha256:" + strings.Repeat("a", 64),
		Attachments: []Attachment{{Subject: "sha256:" + strings.Repeat("a", 64), Digest: "sha256:" + strings.Repeat("b", 64), Kinds: []string{KindSignature}}}}
	good := UpstreamCheck{Key: "sha256:" + strings.Repeat("c", 64), Signature: img.Attachments[0].Digest, Format: "legacy"}
	for _, tc := range []struct {
		name string
		edit func(*UpstreamCheck)
		ok   bool
	}{
		{"good", func(*UpstreamCheck) {}, true},
		{"bad key", func(u *UpstreamCheck) { u.Key = "c" }, false},
		{"bad format", func(u *UpstreamCheck) { u.Format = "pgp" }, false},
		{"signature not carried", func(u *UpstreamCheck) { u.Signature = "sha256:" + strings.Repeat("d", 64) }, false},
	} {
		u := good
		tc.edit(&u)
		img.Upstream = &u
		if err := checkUpstream(img); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
