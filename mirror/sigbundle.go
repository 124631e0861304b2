package mirror

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/trust"
)

// Our signature as cosign v3 writes it with a key and no transparency log:
// per key, a sigstore bundle v0.3 (DSSE over the digest's in-toto
// statement) as the one layer of an OCI 1.1 artifact manifest whose
// subject is the signed manifest. go-containerregistry adds it to the
// sha256-<hex> referrers tag on registries without the referrers API.

// emptyConfig is the OCI empty descriptor's content ("{}").
var emptyConfig = []byte("{}")

// referrerPush is one sigstore-bundle referrer, built before any push.
type referrerPush struct {
	bundleJSON []byte
	manifest   []byte
	digest     v1.Hash
}

// assignFormats decides, for every signed digest, whether our signature
// goes as a .sig tag or as sigstore bundles, and builds the bundles. auto
// writes legacy (every cosign and every Harbor reads it) except on a
// digest the vendor signed with a sigstore bundle and no .sig — there
// cosign v3 reads only bundles and cosign v2 fails either way — unless the
// target is a Harbor before 2.15, which shows only .sig signatures. bundle
// writes bundles everywhere. Never both formats of ours on one digest: a
// digest that already holds our signature in one format (an earlier
// import) keeps that format, except on a target that shows only .sig
// signatures, where legacy is always written.
func (p *plan) assignFormats(ctx context.Context, d *SignatureDecision, ropts []remote.Option) error {
	if d.Chosen == SignatureFormatBundle && d.bundlesHidden {
		d.Reason += "; this Harbor shows only .sig signatures, so its cosign policy will count these images as unsigned"
	}
	for i := range p.images {
		ip := &p.images[i]
		for _, sp := range ip.sigs {
			want := d.Chosen == SignatureFormatBundle
			if d.Requested == SignatureFormatAuto && !d.bundlesHidden && vendorBundleOnly(ip, sp.digest) && len(sp.bundles) > 0 {
				want = true
			}
			if keep, ok := sp.formatThere(ctx, want, d.bundlesHidden, ropts); ok && keep != want {
				want = keep
				d.Kept++
			}
			if !want {
				continue
			}
			if len(sp.bundles) == 0 {
				return &trust.VerificationError{What: trust.WhatCosign, Reason: fmt.Sprintf("%s (%s): sigstore-bundle signatures were asked for, but the approval holds none (the bundle was exported with legacy signatures only)", sp.image, sp.digest), Err: ErrNoBundleSignatures}
			}
			if err := sp.buildBundles(ip); err != nil {
				return err
			}
			d.Bundles++
		}
	}
	return nil
}

// formatThere reports the format our signature already has on sp's digest
// in the registry when it is not the one wanted (ok false: none, or the
// same): a .sig covering ours, or a sigstore bundle of ours.
func (sp *sigPush) formatThere(ctx context.Context, wantBundle, bundlesHidden bool, ropts []remote.Option) (bundleThere bool, ok bool) {
	opts := withCtx(ctx, ropts)
	if wantBundle {
		tag, err := SignatureTag(sp.digest)
		if err != nil {
			return false, false
		}
		if desc, err := remote.Get(sp.repo.Tag(tag), opts...); err == nil && coveredBy(desc.Manifest, sp) {
			return false, true
		}
		return false, false
	}
	if bundlesHidden || len(sp.bundles) == 0 {
		return false, false
	}
	keys := map[string]crypto.PublicKey{}
	for _, b := range sp.bundles {
		keys[b.keyID] = b.pub
	}
	if _, _, found := verifyBundles(sp.repo.Digest(sp.digest), keys, opts); found {
		return true, true
	}
	return false, false
}

// vendorBundleOnly: the source carries a sigstore-bundle signature on
// digest and no cosign .sig.
func vendorBundleOnly(ip *imagePlan, digest string) bool {
	bundled := false
	for _, ap := range ip.attachments {
		switch {
		case ap.att.Subject != digest:
		case ap.att.Tag == bundle.CosignTag(digest, "sig"):
			return false
		case ap.att.ArtifactType == bundle.SigstoreBundleType && ap.att.IsSignatureOnly():
			bundled = true
		}
	}
	return bundled
}

// buildBundles makes one referrer per key and leaves any vendor .sig on
// the digest to be pushed on its own, unmerged.
func (sp *sigPush) buildBundles(ip *imagePlan) error {
	subject, ok := ip.descriptorOf(sp.digest)
	if !ok {
		return fmt.Errorf("internal error: %s holds no manifest %s", sp.image, sp.digest)
	}
	for _, ks := range sp.bundles {
		der, err := cryptoutils.MarshalPublicKeyToDER(ks.pub)
		if err != nil {
			return err
		}
		hint := sha256.Sum256(der)
		rp, err := referrer(bundle.NewSigstoreBundle(sp.digest, base64.StdEncoding.EncodeToString(hint[:]), ks.sig), subject)
		if err != nil {
			return err
		}
		sp.referrers = append(sp.referrers, rp)
	}
	sp.asBundle, sp.upstream = true, nil
	for _, ap := range ip.attachments {
		if ap.att.Tag == bundle.CosignTag(sp.digest, "sig") {
			ap.merged = false
		}
	}
	return nil
}

func referrer(b bundle.SigstoreBundle, subject v1.Descriptor) (referrerPush, error) {
	bj, err := json.Marshal(b)
	if err != nil {
		return referrerPush{}, err
	}
	layer, _, _ := v1.SHA256(strings.NewReader(string(bj)))
	cfg, _, _ := v1.SHA256(strings.NewReader(string(emptyConfig)))
	m := bundle.AttachmentManifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: bundle.SigstoreBundleType,
		Config:  v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Size: int64(len(emptyConfig)), Digest: cfg},
		Layers:  []v1.Descriptor{{MediaType: bundle.SigstoreBundleType, Size: int64(len(bj)), Digest: layer}},
		Subject: &subject,
		Annotations: map[string]string{"dev.sigstore.bundle.content": "dsse-envelope",
			"dev.sigstore.bundle.predicateType": bundle.CosignSignPredicate}}
	raw, err := json.Marshal(m)
	if err != nil {
		return referrerPush{}, err
	}
	h, _, _ := v1.SHA256(strings.NewReader(string(raw)))
	return referrerPush{bundleJSON: bj, manifest: raw, digest: h}, nil
}

// descriptorOf is the descriptor of one of the image's manifests.
func (ip *imagePlan) descriptorOf(digest string) (v1.Descriptor, bool) {
	for _, m := range ip.manifests {
		if m.digest == digest {
			h, _ := v1.NewHash(digest)
			return v1.Descriptor{MediaType: m.mediaType, Size: int64(len(m.raw)), Digest: h}, true
		}
	}
	return v1.Descriptor{}, false
}

// pushBundles writes sp's referrers: their blobs, then each manifest by
// digest (the same bytes on every run, so importing again adds nothing).
func pushBundles(ctx context.Context, sp *sigPush, ropts []remote.Option) error {
	for _, rp := range sp.referrers {
		for _, l := range []v1.Layer{static.NewLayer(emptyConfig, "application/vnd.oci.empty.v1+json"), static.NewLayer(rp.bundleJSON, bundle.SigstoreBundleType)} {
			if err := remote.WriteLayer(sp.repo, l, withCtx(ctx, ropts)...); err != nil {
				return fmt.Errorf("pushing the sigstore bundle of %s (%s): %w", sp.image, sp.digest, err)
			}
		}
		t := rawManifestT{raw: rp.manifest, mt: types.OCIManifestSchema1}
		if err := remote.Put(sp.repo.Digest(rp.digest.String()), t, withCtx(ctx, ropts)...); err != nil {
			return fmt.Errorf("pushing the sigstore bundle of %s (%s): %w", sp.image, sp.digest, err)
		}
	}
	return nil
}

// readBackBundles checks that the referrers of sp's digest list each of
// our bundle manifests.
func readBackBundles(sp *sigPush, opts []remote.Option) error {
	what := fmt.Sprintf("the sigstore-bundle signature of %s (%s)", sp.image, sp.digest)
	idx, err := remote.Referrers(sp.repo.Digest(sp.digest), opts...)
	if err != nil {
		return readBackError(what, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return readBackError(what, err)
	}
	for _, rp := range sp.referrers {
		if err := headIs(sp.repo.Digest(rp.digest.String()), rp.digest.String(), opts); err != nil {
			return err
		}
		found := false
		for _, m := range im.Manifests {
			found = found || m.Digest == rp.digest
		}
		if !found {
			return readBackError(what, fmt.Errorf("the referrers of %s do not list %s", sp.digest, rp.digest))
		}
	}
	return nil
}
