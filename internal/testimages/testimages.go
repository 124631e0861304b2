// Package testimages builds small, deterministic images for tests and the
// demo: the same seed gives the same digests on every run, so tests can
// compare digests across export and import, and a different seed gives
// different ones, so tests can tell fixtures apart. The set covers what
// bundles must handle: a multi-platform index, and two images sharing a
// layer that must be stored once. Image and RandomLayer build other images
// the same way (make bench's large workload): this is the one seeded image
// generator of the repository.
package testimages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The fixture's names: repository:tag, relative to a registry host.
const (
	// MultiArch is an OCI image index for linux/amd64 and linux/arm64.
	MultiArch = "demo/multiarch:1.0"
	// AppOne and AppTwo are linux/amd64 images on the same base layer.
	AppOne = "demo/app-one:1.0"
	AppTwo = "demo/app-two:1.0"
)

// created is every timestamp in the fixture: fixed, so digests are too.
func created() time.Time { return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC) }

// Fixture is a set of images keyed by repository:tag.
type Fixture struct {
	// Images holds AppOne and AppTwo.
	Images map[string]v1.Image
	// Indexes holds MultiArch.
	Indexes map[string]v1.ImageIndex
	// SharedBase is the digest of the layer AppOne and AppTwo share, so
	// tests can check that a bundle stores it once.
	SharedBase v1.Hash
}

// Names returns every name in f, sorted.
func (f Fixture) Names() []string {
	var names []string
	for n := range f.Images {
		names = append(names, n)
	}
	for n := range f.Indexes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// New builds the fixture for seed. Layer contents derive from the seed, and
// every timestamp is fixed, so the digests depend only on the seed (and on
// compress/flate's output, which is stable for a given Go release).
func New(seed int64) (Fixture, error) {
	base, err := layer(seed, "base")
	if err != nil {
		return Fixture{}, err
	}
	f := Fixture{Images: map[string]v1.Image{}, Indexes: map[string]v1.ImageIndex{}}
	if f.SharedBase, err = base.Digest(); err != nil {
		return Fixture{}, fmt.Errorf("base layer digest: %w", err)
	}
	for _, app := range []struct{ name, label string }{{AppOne, "app-one"}, {AppTwo, "app-two"}} {
		own, err := layer(seed, app.label)
		if err != nil {
			return Fixture{}, err
		}
		img, err := Image(v1.Platform{OS: "linux", Architecture: "amd64"}, base, own)
		if err != nil {
			return Fixture{}, fmt.Errorf("%s: %w", app.name, err)
		}
		f.Images[app.name] = img
	}

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		platform := v1.Platform{OS: "linux", Architecture: arch}
		l, err := layer(seed, "multiarch-"+arch)
		if err != nil {
			return Fixture{}, err
		}
		img, err := Image(platform, l)
		if err != nil {
			return Fixture{}, fmt.Errorf("%s %s: %w", MultiArch, arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &platform},
		})
	}
	f.Indexes[MultiArch] = idx
	return f, nil
}

// Image builds an OCI image for platform from layers, with a fixed config
// and history, so that its digest depends only on the layers; mutate fills
// in the config's diff_ids to match.
func Image(platform v1.Platform, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.ConfigFile(
		mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		&v1.ConfigFile{
			Created:      v1.Time{Time: created()},
			OS:           platform.OS,
			Architecture: platform.Architecture,
			RootFS:       v1.RootFS{Type: "layers"},
			Config:       v1.Config{Cmd: []string{"/bin/true"}},
		})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var adds []mutate.Addendum
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: v1.Time{Time: created()}, CreatedBy: "coldharbor testimages"},
		})
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("layers: %w", err)
	}
	// Computing the digest here surfaces any error now rather than at push.
	if _, err := img.Digest(); err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	return img, nil
}

// layer returns a gzip'd tar holding a text file and 2 KiB of bytes drawn
// from (seed, label), with fixed headers, so its digest is reproducible.
func layer(seed int64, label string) (v1.Layer, error) {
	var labelSeed uint64
	for _, c := range []byte(label) {
		labelSeed = labelSeed*131 + uint64(c)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), labelSeed))
	data := make([]byte, 2048)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	files := []struct {
		name string
		body []byte
	}{
		{"etc/coldharbor/" + label, fmt.Appendf(nil, "coldharbor test image layer %q, seed %d\n", label, seed)},
		{"var/lib/coldharbor/" + label + ".bin", data},
	}

	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", label, err)
	}
	tw := tar.NewWriter(zw)
	for _, f := range files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.name,
			Mode:     0o644,
			Size:     int64(len(f.body)),
			ModTime:  created(),
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer %s: %w", label, err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, fmt.Errorf("layer %s: %w", label, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer %s: %w", label, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("layer %s: %w", label, err)
	}
	blob := gz.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", label, err)
	}
	return l, nil
}

// Push writes every image and index of f to host, each under its name, and
// returns each name's manifest digest. opts carry auth and transport; ctx
// is added to them.
func Push(ctx context.Context, host string, f Fixture, opts ...remote.Option) (map[string]v1.Hash, error) {
	opts = append(slices.Clip(opts), remote.WithContext(ctx))
	digests := map[string]v1.Hash{}
	for _, n := range f.Names() {
		tag, err := name.NewTag(host + "/" + n)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", n, err)
		}
		var d v1.Hash
		if img, ok := f.Images[n]; ok {
			if d, err = img.Digest(); err == nil {
				err = remote.Write(tag, img, opts...)
			}
		} else {
			idx := f.Indexes[n]
			// WriteIndex pushes the platform images first, as registries
			// require of an index's children.
			if d, err = idx.Digest(); err == nil {
				err = remote.WriteIndex(tag, idx, opts...)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", tag, err)
		}
		digests[n] = d
	}
	return digests, nil
}

// RandomLayer is a gzip'd tar holding one file of size random bytes drawn
// from (seed, label): large, incompressible layers for measurements. The
// gzip stream stores the bytes (random bytes would not compress, and
// regenerating stays cheap), so the blob is a little larger than size. Each
// open regenerates the stream through a pipe: at most a buffer of it is in
// memory at any time, and nothing is on disk.
func RandomLayer(seed uint64, label string, size int64) (v1.Layer, error) {
	open := func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeRandomLayer(pw, seed, label, size)) }()
		return pr, nil
	}
	l, err := tarball.LayerFromOpener(open, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", label, err)
	}
	return l, nil
}

func writeRandomLayer(w io.Writer, seed uint64, label string, size int64) error {
	var key [32]byte
	h := sha256.New()
	_ = binary.Write(h, binary.BigEndian, seed)
	h.Write([]byte(label))
	copy(key[:], h.Sum(nil))
	rng := rand.NewChaCha8(key)

	zw, err := gzip.NewWriterLevel(w, gzip.NoCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: "bench/" + label + ".bin", Mode: 0o644, Size: size,
		ModTime: created(), Format: tar.FormatPAX,
	}); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		_, _ = rng.Read(buf[:n]) // never fails
		if _, err := tw.Write(buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
