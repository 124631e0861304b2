package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/trust"
)

// attachPush is one attachment an image carries, read and checked before
// any push: its manifest's bytes and what they reference.
type attachPush struct {
	att      bundle.Attachment
	raw      []byte
	manifest *bundle.AttachmentManifest
	// merged: an upstream .sig on a digest we sign too; its layers go into
	// our signature manifest under the same tag instead of being pushed alone.
	merged bool
}

// checkSignedAttachments compares the attachments the bundle lists for img
// with the ones its signed target lists: one signed but absent, or present
// but not signed, is refused by name. It runs before the bundle binding is
// checked so that a bundle edited to drop one is refused naming it.
func checkSignedAttachments(img bundle.Image, t *metadata.TargetFiles, v int64) error {
	onlySigned, onlyBundle := bundle.SameAttachments(custom(t).Attachments, img.Attachments)
	if onlySigned != nil {
		return refuse(trust.Targets, v, "%s: %s is in the signed targets but not in the bundle", img.Name, onlySigned.Name())
	}
	if onlyBundle != nil {
		return refuse(trust.Targets, v, "%s: %s is in the bundle but not in the signed targets", img.Name, onlyBundle.Name())
	}
	return nil
}

// step10aAttachments reads every attachment of every image from the bundle
// and checks it against what was signed: manifest digest and size, the
// subject (a manifest of the image), what it holds (kinds, artifact type),
// and every blob it references, hash-checked now so that an altered
// attachment is refused before anything is pushed. The blobs join the
// image's uploads and everything read is marked reached.
func (p *plan) step10aAttachments(reached map[string]bool) error {
	verified := map[string]bool{}
	for i := range p.images {
		ip := &p.images[i]
		held := map[string]bool{}
		for _, m := range ip.manifests {
			held[m.digest] = true
		}
		for _, a := range ip.img.Attachments {
			ap, err := p.readAttachment(ip, a, held, verified)
			if err != nil {
				return err
			}
			ip.attachments = append(ip.attachments, ap)
			reached[a.Digest] = true
		}
		if err := p.mergeUpstreamSignatures(ip); err != nil {
			return err
		}
	}
	return nil
}

func (p *plan) readAttachment(ip *imagePlan, a bundle.Attachment, held, verified map[string]bool) (*attachPush, error) {
	bad := func(format string, args ...any) error {
		return refuse(trust.WhatBundle, 0, "%s: %s: %s", ip.img.Name, a.Name(), fmt.Sprintf(format, args...))
	}
	if !held[a.Subject] {
		return nil, bad("the image holds no manifest %s", a.Subject)
	}
	raw, err := p.b.ReadBlob(a.Digest, bundle.MaxManifestSize)
	if err != nil {
		return nil, bad("%v", err)
	}
	if int64(len(raw)) != a.Size {
		return nil, bad("the manifest is %d bytes, signed as %d", len(raw), a.Size)
	}
	m, err := bundle.ParseAttachment(raw, types.MediaType(a.MediaType))
	if err != nil {
		return nil, bad("%v", err)
	}
	if a.Tag == "" && (m.Subject == nil || m.Subject.Digest.String() != a.Subject) {
		return nil, bad("a referrer whose manifest does not name %s as its subject", a.Subject)
	}
	if got := bundle.Classify(m, a.Tag); !slices.Equal(got, a.Kinds) || m.ArtifactTypeOf() != a.ArtifactType {
		return nil, bad("the manifest holds %v of type %s, signed as %v of type %s", got, m.ArtifactTypeOf(), a.Kinds, a.ArtifactType)
	}
	for _, d := range m.Blobs() {
		size, ok := p.b.HasBlob(d.Digest.String())
		if !ok {
			return nil, bad("blob %s is not in the bundle", d.Digest)
		}
		if size != d.Size {
			return nil, bad("blob %s is %d bytes, the manifest says %d", d.Digest, size, d.Size)
		}
		if !verified[d.Digest.String()] {
			if err := p.checkBlob(d.Digest.String()); err != nil {
				return nil, bad("%v", err)
			}
			verified[d.Digest.String()] = true
		}
		if err := p.addBlob(ip, d); err != nil {
			return nil, err
		}
	}
	return &attachPush{att: a, raw: raw, manifest: m}, nil
}

// checkBlob reads a whole blob from the bundle, which checks its digest.
func (p *plan) checkBlob(digest string) error {
	rc, _, err := p.b.BlobReader(digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		var de *bundle.DigestError
		if errors.As(err, &de) {
			return fmt.Errorf("blob %s was altered: %v", digest, de)
		}
		return err
	}
	return nil
}

// pushAttachments writes each image's attachments after its manifests,
// tags and signatures: a referrer by digest (go-containerregistry then
// merges it into the sha256-<hex> fallback tag on registries without the
// referrers API, keeping what the tag already lists), a cosign tag by tag.
// An upstream .sig merged into our signature manifest was written with it.
func pushAttachments(ctx context.Context, images []imagePlan, ropts []remote.Option) (int, error) {
	var n int
	done := map[string]bool{}
	for i := range images {
		ip := &images[i]
		for _, ap := range ip.attachments {
			k := ip.repo.String() + "@" + ap.att.Digest + "@" + ap.att.Tag
			if ap.merged || done[k] {
				continue
			}
			done[k] = true
			t := rawManifestT{raw: ap.raw, mt: types.MediaType(ap.att.MediaType)}
			var err error
			if ap.att.Tag == "" {
				err = remote.Put(ip.repo.Digest(ap.att.Digest), t, withCtx(ctx, ropts)...)
			} else {
				err = remote.Put(ip.repo.Tag(ap.att.Tag), t, withCtx(ctx, ropts)...)
			}
			if err != nil {
				return n, fmt.Errorf("pushing %s of %s to %s: %w", ap.att.Name(), ip.img.Name, ip.repo, err)
			}
			n++
		}
	}
	return n, nil
}

// mergeUpstreamSignatures puts the layers of an upstream cosign .sig on a
// digest we sign into our signature manifest for that digest: cosign keeps
// every signature of a digest as a layer of the one manifest under its .sig
// tag (cosign sign appends), so both sets verify there and neither
// replaces the other.
func (p *plan) mergeUpstreamSignatures(ip *imagePlan) error {
	for _, sp := range ip.sigs {
		var upstream []upstreamLayer
		for _, ap := range ip.attachments {
			if ap.att.Tag != bundle.CosignTag(sp.digest, "sig") {
				continue
			}
			for _, l := range ap.manifest.Layers {
				data, err := p.b.ReadBlob(l.Digest.String(), bundle.MaxManifestSize)
				if err != nil {
					return refuse(trust.WhatBundle, 0, "%s: %s: layer %s: %v", ip.img.Name, ap.att.Name(), l.Digest, err)
				}
				upstream = append(upstream, upstreamLayer{data: data, desc: l})
				sp.upstream = append(sp.upstream, l)
			}
			ap.merged = true
		}
		if len(upstream) == 0 {
			continue
		}
		img, err := signatureImageWith(upstream, sp.payload, sp.sigs)
		if err != nil {
			return err
		}
		sp.manifest = img
	}
	return nil
}
