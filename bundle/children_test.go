package bundle_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
)

// The signer signs a child manifest only when the image's index, carried in
// the head, lists it: a bundle cannot get a signature for a digest the
// approved image does not hold.
func TestSignerSignsOnlyTheIndexChildren(t *testing.T) {
	foreign := "sha256:" + strings.Repeat("ab", 32)
	multi := func(idx *bundle.Index) *bundle.Image {
		for i := range idx.Images {
			if len(idx.Images[i].Children) > 0 {
				return &idx.Images[i]
			}
		}
		t.Fatal("the good bundle has no multi-platform image")
		return nil
	}
	for _, c := range []struct {
		name, want string
		edit       func(t *testing.T, e []tarEntry)
	}{
		{"foreign child", "its index reaches", func(t *testing.T, e []tarEntry) {
			withIndex(t, e, func(idx *bundle.Index) {
				img := multi(idx)
				img.Children[0].Digest = foreign
				// A payload that matches the forged digest, so only the
				// index comparison can catch it.
				p, err := bundle.DigestPayload(idx.Destination, img.Name, foreign)
				if err != nil {
					t.Fatal(err)
				}
				for i := range e {
					if e[i].Hdr.Name == img.Children[0].Payload {
						e[i].Data, e[i].Hdr.Size = p, int64(len(p))
					}
				}
			})
		}},
		{"child dropped", "lists 1 child manifests for signing, its index reaches 2", func(t *testing.T, e []tarEntry) {
			withIndex(t, e, func(idx *bundle.Index) { img := multi(idx); img.Children = img.Children[1:] })
		}},
		{"children of a single manifest", "has no child manifests to sign", func(t *testing.T, e []tarEntry) {
			withIndex(t, e, func(idx *bundle.Index) {
				m := multi(idx)
				for i := range idx.Images {
					if len(idx.Images[i].Children) == 0 {
						idx.Images[i].Children = m.Children[:1]
						return
					}
				}
			})
		}},
		{"index copy missing", "lacks a copy of its index", func(t *testing.T, e []tarEntry) {
			withIndex(t, e, func(idx *bundle.Index) {
				copyName := bundle.IndexCopyName(multi(idx).Digest)
				for i, m := range idx.Members {
					if m.Name == copyName {
						idx.Members = append(idx.Members[:i], idx.Members[i+1:]...)
						return
					}
				}
				t.Fatalf("no %s in the head", copyName)
			})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := clone(readTar(t, goodBundle(t)))
			c.edit(t, e)
			if c.name != "index copy missing" {
				syncIndex(t, e)
			}
			_, err := approve.MakePlan(t.Context(), bytes.NewReader(writeTar(t, e)), "bundle.tar", "")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("MakePlan: %v, want an error with %q", err, c.want)
			}
		})
	}
}
