package bundle

import (
	"bytes"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Child is a manifest an image's index reaches (a platform manifest, or a
// nested index): registries and Harbor's cosign policy treat each as an
// artifact of its own, pulled by digest, so each carries a cosign payload
// and signature of its own, as `cosign sign --recursive` makes them.
type Child struct {
	Digest  string `json:"digest"`
	Payload string `json:"payload"` // head/payloads/<n>.json
}

// Signed is one (digest, payload member) pair of an image that the signer
// signs and the importer pushes a signature for.
type Signed struct {
	Digest  string
	Payload string
}

// SignedDigests lists what img's signatures cover: its own manifest first,
// then each child in the order the index lists them.
func (img Image) SignedDigests() []Signed {
	out := []Signed{{img.Digest, img.Payload}}
	for _, c := range img.Children {
		out = append(out, Signed{c.Digest, c.Payload})
	}
	return out
}

// maxChildren bounds the children of one image (an index of indexes of
// platform manifests is a few dozen in practice).
const maxChildren = 10_000

// Descendants lists every manifest the index top reaches — children, then
// theirs, depth first in the order each index lists them, each digest once,
// top excluded — reading index bytes through get. An image that is not an
// index has none. get must return bytes whose digest it has checked.
func Descendants(top string, mediaType string, get func(digest string) ([]byte, bool)) ([]v1.Descriptor, error) {
	var out []v1.Descriptor
	seen := map[string]bool{top: true}
	var walk func(digest string, depth int) error
	walk = func(digest string, depth int) error {
		if depth > 4 {
			return fmt.Errorf("indexes nested more than 4 deep")
		}
		raw, ok := get(digest)
		if !ok {
			return fmt.Errorf("index %s is missing", digest)
		}
		im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("index %s: %w", digest, err)
		}
		for _, c := range im.Manifests {
			d := c.Digest.String()
			if seen[d] {
				continue
			}
			seen[d] = true
			if out = append(out, c); len(out) > maxChildren {
				return fmt.Errorf("index %s reaches more than %d manifests", top, maxChildren)
			}
			if c.MediaType.IsIndex() {
				if err := walk(d, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if !types.MediaType(mediaType).IsIndex() {
		return nil, nil
	}
	if err := walk(top, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckChildren compares the children an index lists for img with those
// its index bytes reach: a signer signs nothing the image does not hold.
func CheckChildren(img Image, get func(string) ([]byte, bool)) error {
	want, err := Descendants(img.Digest, img.MediaType, get)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Name, err)
	}
	if len(want) != len(img.Children) {
		return fmt.Errorf("image %s lists %d child manifests for signing, its index reaches %d", img.Name, len(img.Children), len(want))
	}
	for i, d := range want {
		if img.Children[i].Digest != d.Digest.String() {
			return fmt.Errorf("image %s: child manifest %d is %s, its index reaches %s there", img.Name, i, img.Children[i].Digest, d.Digest)
		}
	}
	return nil
}
