package mirror

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// sigPush is one cosign signature manifest: the approval's signatures over
// one manifest digest (an image's or one of its children's), pushed by tag
// into the image's repository, where Harbor records it as an accessory.
type sigPush struct {
	image    string // target name, for messages
	repo     name.Repository
	digest   string
	payload  []byte
	keys     map[string]crypto.PublicKey // key ID → key, of the signatures below
	sigs     []string                    // base64 DER signatures over payload
	manifest v1.Image                    // built before any push
	// upstream are the source's signature layers on this digest (its .sig
	// attachment), merged into manifest; they must stay under the tag too.
	upstream []v1.Descriptor
	// bundles are the approval's signatures over the digest's in-toto
	// statement, one per key, when the export asked for sigstore bundles;
	// asBundle says the import writes those instead of the .sig tag.
	bundles   []keyedSig
	asBundle  bool
	referrers []referrerPush // built by assignFormats when asBundle
}

// keyedSig is one signature and the key that made it.
type keyedSig struct {
	keyID string
	pub   crypto.PublicKey
	sig   []byte
}

// imageSignatures checks the approval's signatures over img's manifest and
// each child's: every payload exactly the one for its digest, every
// signature by a targets key and verifying, at least one for each digest,
// one per key. It returns one signature manifest per digest.
func imageSignatures(dest string, payloads func(member string) []byte, all []bundle.Signature, img bundle.Image, repo name.Repository, keys map[string]crypto.PublicKey) ([]*sigPush, error) {
	var out []*sigPush
	for _, sd := range img.SignedDigests() {
		sp := &sigPush{image: img.Name, repo: repo, digest: sd.Digest, payload: payloads(sd.Payload), keys: map[string]crypto.PublicKey{}}
		want, err := bundle.DigestPayload(dest, img.Name, sd.Digest)
		if err != nil || string(want) != string(sp.payload) {
			return nil, refuse(trust.WhatCosign, 0, "the payload for %s does not name %s", img.Name, sd.Digest)
		}
		for _, s := range all {
			if s.Image != img.Name || s.Digest != sd.Digest || s.Payload != sd.Payload {
				continue
			}
			if s.Format != "" {
				if err := sp.addBundleSig(s, keys); err != nil {
					return nil, err
				}
				continue
			}
			// One signature per key and manifest (the format says so): copies
			// would only grow the signature manifest past what registries take.
			if _, dup := sp.keys[s.KeyID]; dup {
				return nil, &trust.VerificationError{What: trust.WhatCosign, KeyIDs: []string{s.KeyID}, Reason: fmt.Sprintf("the approval holds two signatures on %s (%s) by the same key", img.Name, sd.Digest)}
			}
			pub, ok := keys[s.KeyID]
			if !ok {
				return nil, &trust.VerificationError{What: trust.WhatCosign, KeyIDs: []string{s.KeyID}, Reason: fmt.Sprintf("signature on %s (%s) is by a key that is not a targets key", img.Name, sd.Digest)}
			}
			raw, err := base64.StdEncoding.DecodeString(s.Signature)
			if err != nil || hsm.VerifySignature(pub, sp.payload, raw) != nil {
				return nil, &trust.VerificationError{What: trust.WhatCosign, KeyIDs: []string{s.KeyID}, Reason: fmt.Sprintf("signature on %s (%s) does not verify", img.Name, sd.Digest)}
			}
			sp.keys[s.KeyID] = pub
			sp.sigs = append(sp.sigs, s.Signature)
		}
		if len(sp.sigs) == 0 {
			return nil, refuse(trust.WhatCosign, 0, "no signature by a targets key for %s (%s)", img.Name, sd.Digest)
		}
		// Built now so that nothing about it can fail after tags are pushed.
		if sp.manifest, err = signatureImage(sp.payload, sp.sigs); err != nil {
			return nil, err
		}
		out = append(out, sp)
	}
	return out, nil
}

// checkChildren compares the manifests the import walked under an image
// with the children its approval signs: a platform manifest pulled by
// digest needs a signature of its own (Harbor's cosign policy answers 412
// without one), and nothing outside the image may be signed.
func checkChildren(ip *imagePlan) error {
	walked := map[string]bool{}
	for _, m := range ip.manifests[:len(ip.manifests)-1] {
		walked[m.digest] = true
	}
	if len(ip.img.Children) == 0 && len(walked) > 0 {
		return refuse(trust.WhatBundle, 0, "%s: the bundle signs its index but none of its %d child manifests (made by an older coldharbor?): export and sign it again", ip.img.Name, len(walked))
	}
	listed := map[string]bool{}
	for _, c := range ip.img.Children {
		if !walked[c.Digest] {
			return refuse(trust.WhatBundle, 0, "%s: child manifest %s is signed but the image does not hold it", ip.img.Name, c.Digest)
		}
		listed[c.Digest] = true
	}
	for d := range walked {
		if !listed[d] {
			return refuse(trust.WhatBundle, 0, "%s: child manifest %s has no signature in the bundle", ip.img.Name, d)
		}
	}
	return nil
}

// uniqueSignatures lists each repository and digest once: two tags of one
// image (or images sharing a platform manifest) in one repository share a
// signature tag, and writing it twice would race and, in Harbor, leave two
// accessories.
func uniqueSignatures(images []imagePlan) []*sigPush {
	seen := map[string]bool{}
	var out []*sigPush
	for _, ip := range images {
		for _, sp := range ip.sigs {
			k := sp.repo.String() + "@" + sp.digest
			if !seen[k] {
				seen[k] = true
				out = append(out, sp)
			}
		}
	}
	return out
}

// pushSignature writes sp's manifest under its tag unless the registry's
// manifest there already holds a verifying signature over the same payload
// by every key sp signs with. Harbor keeps a replaced signature manifest as
// a second accessory, so importing again, or a later bundle with the same
// image, must not replace one that already says what ours would. It
// reports whether it wrote.
func pushSignature(ctx context.Context, sp *sigPush, ropts []remote.Option, log *slog.Logger) (bool, error) {
	tag, err := SignatureTag(sp.digest)
	if err != nil {
		return false, err
	}
	ref := sp.repo.Tag(tag)
	had := false
	if desc, err := remote.Get(ref, withCtx(ctx, ropts)...); err == nil {
		had = true
		if coveredBy(desc.Manifest, sp) && holdsLayers(desc.Manifest, sp.upstream) == nil {
			return false, nil
		}
	}
	if err := remote.Write(ref, sp.manifest, withCtx(ctx, ropts)...); err != nil {
		return false, fmt.Errorf("pushing the cosign signature of %s (%s): %w", sp.image, sp.digest, err)
	}
	if had {
		log.Warn("replaced a signature manifest that lacked our signatures; Harbor keeps the old one as another accessory",
			"image", sp.image, "digest", sp.digest, "tag", tag)
	}
	return true, nil
}

// maxSigLayers bounds the layers read from a registry's signature manifest.
const maxSigLayers = 1000

// coveredBy reports whether a signature manifest from the registry holds,
// for each of sp's keys, a simple-signing layer with exactly sp's payload
// and a signature that verifies. Only our own payload bytes are verified:
// a layer with the payload's digest has the payload's content.
func coveredBy(raw []byte, sp *sigPush) bool {
	m, err := v1.ParseManifest(strings.NewReader(string(raw)))
	if err != nil || len(m.Layers) > maxSigLayers {
		return false
	}
	sum := sha256.Sum256(sp.payload)
	want := "sha256:" + hex.EncodeToString(sum[:])
	found := map[string]bool{}
	for _, l := range m.Layers {
		if l.MediaType != SimpleSigningMediaType || l.Digest.String() != want {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
		if err != nil {
			continue
		}
		for id, pub := range sp.keys {
			if hsm.VerifySignature(pub, sp.payload, sig) == nil {
				found[id] = true
			}
		}
	}
	return len(found) == len(sp.keys)
}

// addBundleSig checks one approval signature over the digest's in-toto
// statement (bundle.StatementPAE): format "bundle", by a targets key, one
// per key, verifying.
func (sp *sigPush) addBundleSig(s bundle.Signature, keys map[string]crypto.PublicKey) error {
	bad := func(reason string) error {
		return &trust.VerificationError{What: trust.WhatCosign, KeyIDs: []string{s.KeyID}, Reason: fmt.Sprintf("sigstore-bundle signature on %s (%s) %s", sp.image, sp.digest, reason)}
	}
	if s.Format != bundle.SigBundle {
		return bad(fmt.Sprintf("has unknown format %q", s.Format))
	}
	for _, b := range sp.bundles {
		if b.keyID == s.KeyID {
			return bad("is there twice by the same key")
		}
	}
	pub, ok := keys[s.KeyID]
	if !ok {
		return bad("is by a key that is not a targets key")
	}
	raw, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || hsm.VerifySignature(pub, bundle.StatementPAE(sp.digest), raw) != nil {
		return bad("does not verify")
	}
	sp.bundles = append(sp.bundles, keyedSig{keyID: s.KeyID, pub: pub, sig: raw})
	return nil
}
