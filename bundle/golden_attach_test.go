package bundle_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

// goldenVendorKey is the vendor's signing key of golden-attachments/: an
// ed25519 key from a fixed seed (ed25519 signatures are deterministic), so
// the .sig is the same bytes on every run and still verifies.
func goldenVendorKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("coldharbor golden-attachments vendor key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// goldenAttachment is one attachment of golden-attachments/ as its vendor
// pushes it: under cosign's tag for the subject.
type goldenAttachment struct {
	suffix string // sig, sbom, att
	kinds  []string
	img    v1.Image
}

// goldenAttachmentImages are what the vendor attaches to app-one (digest
// subject) in golden-attachments/: a cosign .sig (simple-signing payload
// naming vendor.example/demo/app-one@subject, signed by goldenVendorKey), an
// SPDX SBOM under .sbom, and a DSSE SLSA provenance attestation under .att.
// Every byte is fixed: no time, no random, no registry address.
func goldenAttachmentImages(t testing.TB, subject v1.Hash) []goldenAttachment {
	t.Helper()
	artifact := func(layer []byte, mt types.MediaType, ann map[string]string) v1.Image {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(layer, mt), Annotations: ann})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	payload := []byte(`{"critical":{"identity":{"docker-reference":"vendor.example/demo/app-one"},"image":{"docker-manifest-digest":"` +
		subject.String() + `"},"type":"cosign container image signature"},"optional":null}`)
	sig := ed25519.Sign(goldenVendorKey(), payload)
	return []goldenAttachment{
		{"sig", []string{bundle.KindSignature}, artifact(payload, "application/vnd.dev.cosign.simplesigning.v1+json",
			map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig)})},
		{"sbom", []string{bundle.KindSBOM}, artifact([]byte(`{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"app-one","packages":[]}`), "text/spdx+json", nil)},
		{"att", []string{bundle.KindProvenance}, artifact([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`), bundle.DSSEMediaType,
			map[string]string{"predicateType": "https://slsa.dev/provenance/v1"})},
	}
}

// pushGoldenAttachments pushes goldenAttachmentImages of app-one to the
// world's source registry, each under its cosign tag.
func pushGoldenAttachments(t testing.TB, w *world) {
	t.Helper()
	ref, err := name.ParseReference(w.src(testimages.AppOne))
	if err != nil {
		t.Fatal(err)
	}
	repo := ref.Context()
	subject := w.digests[testimages.AppOne]
	for _, a := range goldenAttachmentImages(t, subject) {
		if err := remote.Write(repo.Tag(bundle.CosignTag(subject.String(), a.suffix)), a.img); err != nil {
			t.Fatal(err)
		}
	}
}

// goldenAttachments are the attachments golden-attachments/ must list, by
// fixture name: app-one's three, nothing on the other images. The test
// checks the .sig verifies with the vendor key on the way.
func goldenAttachments(t testing.TB, fix testimages.Fixture) map[string][]bundle.Attachment {
	t.Helper()
	subject, _, _ := fixtureDigest(t, fix, testimages.AppOne)
	var out []bundle.Attachment
	for _, a := range goldenAttachmentImages(t, subject) {
		d, err := a.img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := a.img.RawManifest()
		mt, _ := a.img.MediaType()
		m, _ := a.img.Manifest()
		out = append(out, bundle.Attachment{Subject: subject.String(), Digest: d.String(), MediaType: string(mt), Size: int64(len(raw)),
			ArtifactType: string(m.Config.MediaType), Tag: bundle.CosignTag(subject.String(), a.suffix), Kinds: a.kinds})
		if a.suffix == "sig" {
			l, _ := a.img.Layers()
			rc, err := l[0].Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			payload, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			sig, _ := base64.StdEncoding.DecodeString(m.Layers[0].Annotations["dev.cosignproject.cosign/signature"])
			if !ed25519.Verify(goldenVendorKey().Public().(ed25519.PublicKey), payload, sig) {
				t.Error("the golden .sig does not verify with the vendor key")
			}
		}
	}
	return map[string][]bundle.Attachment{testimages.AppOne: out}
}
