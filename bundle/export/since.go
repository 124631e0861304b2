package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/internal/regsession"
	"github.com/coldharbor/coldharbor/trust"
)

// published are the blobs the images published in a repository hold:
// digest → the blob, in the first repository (by target name) that has it.
type published map[v1.Hash]bundle.PresentBlob

// publishedBlobs reads the repository in dir (the exporter's copy of the
// isolated side's published repository): each published target's manifest
// from its target file, checked against its signed hash, and what it
// references. An index's platform manifests are not target files: they are
// read from the image's source when it still has them. Whatever cannot be
// read is simply carried again.
func (c *collector) publishedBlobs(ctx context.Context, dir string) (published, error) {
	st, err := trust.LoadState(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("reading the published repository %s: %w", dir, err)
	}
	tg := st.Published
	if tg == nil {
		tg = st.Targets
	}
	out := published{}
	names := make([]string, 0, len(tg.Signed.Targets))
	for n := range tg.Signed.Targets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t := tg.Signed.Targets[n]
		if n == bundle.CosignPubTarget || t.Length > bundle.MaxManifestSize {
			continue
		}
		raw, err := readTargetFile(dir, n, t.Hashes["sha256"].String(), t.Length)
		if err != nil {
			continue // not here: its blobs travel again
		}
		var cu bundle.TargetCustom
		if t.Custom != nil {
			_ = json.Unmarshal(*t.Custom, &cu)
		}
		repo, _, _ := strings.Cut(n, ":")
		c.addPublished(out, repo, c.sourceRepo(cu.Source), types.MediaType(cu.MediaType), raw, 0)
	}
	return out, nil
}

// addPublished records the blobs of one published manifest (raw) held in
// repo; an index's children are fetched from src, if it still has them.
func (c *collector) addPublished(out published, repo string, src *name.Repository, mt types.MediaType, raw []byte, depth int) {
	switch {
	case mt.IsImage():
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return
		}
		for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			if _, ok := out[d.Digest]; !ok {
				out[d.Digest] = bundle.PresentBlob{Digest: d.Digest.String(), Size: d.Size, Repository: repo}
			}
		}
	case mt.IsIndex() && src != nil && depth < 4:
		im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return
		}
		for _, child := range im.Manifests {
			d, err := remote.Get(src.Digest(child.Digest.String()), c.opts...)
			if err != nil || d.Digest != child.Digest {
				continue
			}
			c.addPublished(out, repo, src, child.MediaType, d.Manifest, depth+1)
		}
	}
}

// leaveOut takes out of the bundle every blob an image already published
// holds (same digest and size) and returns them, in bundle order.
func (c *collector) leaveOut(pub published) []bundle.PresentBlob {
	var present []bundle.PresentBlob
	kept := c.blobOrder[:0]
	for _, h := range c.blobOrder {
		if p, ok := pub[h]; ok && p.Size == c.blobs[h].size {
			present = append(present, p)
			delete(c.blobs, h)
			continue
		}
		kept = append(kept, h)
	}
	c.blobOrder = kept
	return present
}

// readTargetFile reads a target file of dir, checked against its signed
// length and sha256.
func readTargetFile(dir, target, sumHex string, length int64) ([]byte, error) {
	f, err := os.Open(trust.TargetPathHex(dir, target, sumHex))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, length+1))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	if int64(len(raw)) != length || hex.EncodeToString(sum[:]) != sumHex {
		return nil, fmt.Errorf("target file of %s does not match its signed hash", target)
	}
	return raw, nil
}

// sourceRepo reads the repository of a target's custom.source
// (REPOSITORY@DIGEST), nil when there is none.
func (c *collector) sourceRepo(source string) *name.Repository {
	ref, err := name.NewDigest(source, regsession.NameOptions(c.insecure, source)...)
	if err != nil {
		return nil
	}
	r := ref.Context()
	return &r
}
