package testimages_test

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/testimages"
)

func newFixture(t *testing.T, seed int64) testimages.Fixture {
	t.Helper()
	f, err := testimages.New(seed)
	if err != nil {
		t.Fatalf("New(%d): %v", seed, err)
	}
	return f
}

// digests returns the manifest digest of every name and every layer digest.
func digests(t *testing.T, f testimages.Fixture) map[string]v1.Hash {
	t.Helper()
	out := map[string]v1.Hash{}
	add := func(key string, d v1.Hash, err error) {
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		out[key] = d
	}
	addImage := func(key string, img v1.Image) {
		d, err := img.Digest()
		add(key, d, err)
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range layers {
			d, err := l.Digest()
			add(fmt.Sprintf("%s/layer%d", key, i), d, err)
		}
	}
	for n, img := range f.Images {
		addImage(n, img)
	}
	for n, idx := range f.Indexes {
		d, err := idx.Digest()
		add(n, d, err)
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			addImage(n+"/"+m.Platform.Architecture, img)
		}
	}
	return out
}

func TestDeterministic(t *testing.T) {
	f := newFixture(t, 1)
	if got, want := f.Names(), []string{testimages.AppOne, testimages.AppTwo, testimages.MultiArch}; !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	one, again, other := digests(t, f), digests(t, newFixture(t, 1)), digests(t, newFixture(t, 2))
	for key, d := range one {
		if again[key] != d {
			t.Errorf("%s: seed 1 gave %s, then %s", key, d, again[key])
		}
		if other[key] == d {
			t.Errorf("%s: seeds 1 and 2 both gave %s", key, d)
		}
	}
}

func TestAppsShareOneLayer(t *testing.T) {
	f := newFixture(t, 1)
	layerSet := func(n string) map[v1.Hash]bool {
		layers, err := f.Images[n].Layers()
		if err != nil {
			t.Fatal(err)
		}
		set := map[v1.Hash]bool{}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			set[d] = true
		}
		return set
	}
	one, two := layerSet(testimages.AppOne), layerSet(testimages.AppTwo)
	var shared []v1.Hash
	for d := range one {
		if two[d] {
			shared = append(shared, d)
		}
	}
	if len(one) != 2 || len(two) != 2 || len(shared) != 1 || shared[0] != f.SharedBase {
		t.Fatalf("app layers %v and %v share %v, want exactly SharedBase %s", one, two, shared, f.SharedBase)
	}
}

func TestIndexPlatforms(t *testing.T) {
	idx := newFixture(t, 1).Indexes[testimages.MultiArch]
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("index media type %s", mt)
	}
	want := []string{"linux/amd64", "linux/arm64"}
	if len(im.Manifests) != len(want) {
		t.Fatalf("index has %d manifests, want %d", len(im.Manifests), len(want))
	}
	for i, m := range im.Manifests {
		if m.Platform == nil || m.Platform.String() != want[i] {
			t.Errorf("manifest %d: platform %v, want %s", i, m.Platform, want[i])
			continue
		}
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cf.Platform().String(); got != want[i] {
			t.Errorf("manifest %d: config says %s, descriptor %s", i, got, want[i])
		}
	}
}

// Every image must be what a registry and a runtime accept: a config whose
// diff_ids match small, valid gzip'd tar layers.
func TestImagesAreWellFormed(t *testing.T) {
	f := newFixture(t, 1)
	tests := []struct {
		name     string
		img      func() (v1.Image, error)
		platform string
		layers   int
	}{
		{testimages.AppOne, func() (v1.Image, error) { return f.Images[testimages.AppOne], nil }, "linux/amd64", 2},
		{testimages.AppTwo, func() (v1.Image, error) { return f.Images[testimages.AppTwo], nil }, "linux/amd64", 2},
		{testimages.MultiArch + " arm64", func() (v1.Image, error) {
			idx := f.Indexes[testimages.MultiArch]
			im, err := idx.IndexManifest()
			if err != nil {
				return nil, err
			}
			return idx.Image(im.Manifests[1].Digest)
		}, "linux/arm64", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := tt.img()
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Platform().String() != tt.platform {
				t.Errorf("platform %s, want %s", cf.Platform(), tt.platform)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(layers) != tt.layers || len(cf.RootFS.DiffIDs) != tt.layers {
				t.Fatalf("%d layers, %d diff_ids, want %d", len(layers), len(cf.RootFS.DiffIDs), tt.layers)
			}
			for i, l := range layers {
				diffID, err := l.DiffID()
				if err != nil {
					t.Fatal(err)
				}
				if diffID != cf.RootFS.DiffIDs[i] {
					t.Errorf("layer %d: diff_id %s, config says %s", i, diffID, cf.RootFS.DiffIDs[i])
				}
				if size, _ := l.Size(); size > 8<<10 {
					t.Errorf("layer %d: %d bytes, want a few KB", i, size)
				}
				files := tarFiles(t, l)
				if len(files) != 2 {
					t.Errorf("layer %d holds %v, want two files", i, files)
				}
			}
		})
	}
}

func tarFiles(t *testing.T, l v1.Layer) []string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatalf("layer is not a valid tar: %v", err)
		}
		names = append(names, h.Name)
	}
}

func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	f := newFixture(t, 1)
	pushed, err := testimages.Push(t.Context(), host, f)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	want := digests(t, f)
	if len(pushed) != len(f.Names()) {
		t.Fatalf("Push returned %v for %v", pushed, f.Names())
	}
	for _, n := range f.Names() {
		if pushed[n] != want[n] {
			t.Errorf("%s: Push returned %s, want %s", n, pushed[n], want[n])
		}
		ref, err := name.NewTag(host + "/" + n)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref, remote.WithContext(t.Context()))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if desc.Digest != want[n] {
			t.Errorf("%s: registry has %s, want %s", n, desc.Digest, want[n])
		}
	}
}
