package mirror

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// cosign 2.x's signature layout (docs/design.md, section 4), which cosign
// 3.x still verifies and Harbor shows as signed: tag sha256-<hex>.sig in the
// image's repository; an OCI manifest whose config is an OCI config listing
// the layers; one layer per signature, media type simplesigning, the
// payload as blob and the base64 DER signature in an annotation.
const (
	SimpleSigningMediaType = types.MediaType("application/vnd.dev.cosign.simplesigning.v1+json")
	SignatureAnnotation    = "dev.cosignproject.cosign/signature"
)

// SignatureTag is the tag cosign 2.x stores an image's signatures under.
func SignatureTag(digest string) (string, error) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s-%s.sig", h.Algorithm, h.Hex), nil
}

// signatureImage builds the signature manifest for one image: one layer per
// signature over the same payload.
func signatureImage(payload []byte, sigs []string) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, s := range sigs {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:       static.NewLayer(payload, SimpleSigningMediaType),
			Annotations: map[string]string{SignatureAnnotation: s},
		})
		if err != nil {
			return nil, fmt.Errorf("building the signature manifest: %w", err)
		}
	}
	return img, nil
}

// repositoryOf splits a target name REPOSITORY:TAG.
func repositoryOf(target string) (repo, tag string) {
	i := strings.LastIndexByte(target, ':')
	return target[:i], target[i+1:]
}

// upstreamLayer is a signature layer carried from the source's .sig
// manifest: its bytes and its descriptor (media type, annotations).
type upstreamLayer struct {
	data []byte
	desc v1.Descriptor
}

// signatureImageWith builds a signature manifest holding the upstream
// layers, unchanged, followed by ours.
func signatureImageWith(upstream []upstreamLayer, payload []byte, sigs []string) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, u := range upstream {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(u.data, u.desc.MediaType), Annotations: u.desc.Annotations})
		if err != nil {
			return nil, fmt.Errorf("building the signature manifest: %w", err)
		}
	}
	ours, err := signatureImage(payload, sigs)
	if err != nil {
		return nil, err
	}
	layers, err := ours.Layers()
	if err != nil {
		return nil, err
	}
	m, err := ours.Manifest()
	if err != nil {
		return nil, err
	}
	for i, l := range layers {
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, Annotations: m.Layers[i].Annotations}); err != nil {
			return nil, fmt.Errorf("building the signature manifest: %w", err)
		}
	}
	return img, nil
}
