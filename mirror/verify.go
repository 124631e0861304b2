package mirror

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/regsession"
	"github.com/coldharbor/coldharbor/trust"
)

// Target is one line of `coldharbor list`, as `notary list` shows it.
type Target struct {
	Name      string    `json:"name"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Role      string    `json:"role"`
	Expires   time.Time `json:"expires"`
	MediaType string    `json:"media_type,omitempty"`
	Source    string    `json:"source,omitempty"`
}

// List refreshes TUF from src as a client would and returns every target.
func List(ctx context.Context, src Source) ([]Target, error) {
	up, err := src.Refresh()
	if err != nil {
		return nil, err
	}
	tm := up.GetTrustedMetadataSet()
	tg := tm.Targets[trust.Targets]
	var out []Target
	for n, t := range tg.Signed.Targets {
		c := custom(t)
		out = append(out, Target{Name: n, Digest: "sha256:" + t.Hashes["sha256"].String(), Size: t.Length, Role: trust.Targets,
			Expires: tg.Signed.Expires, MediaType: c.MediaType, Source: c.Source})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, ctx.Err()
}

// Check is what `coldharbor verify` found for one image.
type Check struct {
	Image          string `json:"image"`
	Target         string `json:"target"`
	TrustedDigest  string `json:"trusted_digest"`
	RegistryDigest string `json:"registry_digest"`
	TargetsVersion int64  `json:"targets_version"`
	SignedBy       string `json:"signed_by,omitempty"` // key ID of a cosign signature that verified
	SignatureTag   string `json:"signature_tag"`
}

// VerifyOptions configure VerifyImages.
type VerifyOptions struct {
	// Registry is HOST[/PREFIX] the targets are relative to; empty: each
	// image's own registry, no prefix.
	Registry string
	Remote   []remote.Option
	// RequireAttestation refuses targets (and cosign signatures) by a key
	// whose hardware attestation the trusted ceremony/attestations.json
	// target does not record, or records but does not verify against
	// AttestationRoots (nil: Yubico's PIV CA).
	RequireAttestation bool
	AttestationRoots   *x509.CertPool
}

// VerifyImages refreshes TUF from src, then for each image: resolves it in
// its registry, checks the digest is the trusted target for its name, and
// that a cosign signature in the registry by a key in the trusted cosign.pub
// target covers that digest. Any failure is a refusal.
func VerifyImages(ctx context.Context, src Source, images []string, o VerifyOptions) ([]Check, error) {
	up, err := src.Refresh()
	if err != nil {
		return nil, err
	}
	keys, err := trustedCosignKeys(up)
	if err != nil {
		return nil, err
	}
	ropts, err := regsession.Options(ctx, o.Remote)
	if err != nil {
		return nil, err
	}
	tg := up.GetTrustedMetadataSet().Targets[trust.Targets]
	if o.RequireAttestation {
		if keys, err = attestedKeys(up, keys, o.AttestationRoots); err != nil {
			return nil, err
		}
	}
	var out []Check
	for _, image := range images {
		c, err := verifyImage(up, keys, image, o.Registry, ropts)
		if err != nil {
			return out, err
		}
		c.TargetsVersion = tg.Signed.Version
		out = append(out, *c)
	}
	return out, nil
}

func verifyImage(up *updater.Updater, keys map[string]crypto.PublicKey, image, registry string, ropts []remote.Option) (*Check, error) {
	ref, err := name.NewTag(image, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("%s: give a tagged image, REGISTRY/REPOSITORY:TAG: %w", image, err)
	}
	repoPath := ref.Context().RepositoryStr()
	if registry != "" {
		host, prefix, _ := strings.Cut(strings.TrimSuffix(registry, "/"), "/")
		if ref.RegistryStr() != host || (prefix != "" && !strings.HasPrefix(repoPath, prefix+"/")) {
			return nil, fmt.Errorf("%s is not under the registry %s", image, registry)
		}
		if prefix != "" {
			repoPath = strings.TrimPrefix(repoPath, prefix+"/")
		}
	}
	target := repoPath + ":" + ref.TagStr()
	c := &Check{Image: image, Target: target}
	tf, err := up.GetTargetInfo(target)
	if err != nil {
		return nil, &trust.VerificationError{What: trust.Targets, Reason: fmt.Sprintf("%s: no trusted target %s", image, target), Err: err}
	}
	c.TrustedDigest = "sha256:" + tf.Hashes["sha256"].String()
	desc, err := remote.Head(ref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", image, err)
	}
	c.RegistryDigest = desc.Digest.String()
	if c.RegistryDigest != c.TrustedDigest || desc.Size != tf.Length {
		return nil, &trust.VerificationError{What: trust.Targets, Reason: fmt.Sprintf("%s is %s (%d bytes) in the registry; the trusted target %s is %s (%d bytes)", image, c.RegistryDigest, desc.Size, target, c.TrustedDigest, tf.Length)}
	}
	tag, _ := SignatureTag(c.TrustedDigest)
	c.SignatureTag = tag
	sigImg, err := remote.Image(ref.Context().Tag(tag), ropts...)
	if err != nil {
		return nil, &trust.VerificationError{What: trust.WhatCosign, Reason: fmt.Sprintf("%s: no cosign signature (%s)", image, tag), Err: err}
	}
	m, err := sigImg.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", image, tag, err)
	}
	for _, l := range m.Layers {
		if l.MediaType != SimpleSigningMediaType || l.Size > 64<<10 {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
		if err != nil {
			continue
		}
		layer, err := sigImg.LayerByDigest(l.Digest)
		if err != nil {
			continue
		}
		rc, err := layer.Compressed()
		if err != nil {
			continue
		}
		pl, err := io.ReadAll(io.LimitReader(rc, 64<<10))
		rc.Close()
		if err != nil {
			continue
		}
		var p payload.Cosign
		if json.Unmarshal(pl, &p) != nil || p.Image.DigestStr() != c.TrustedDigest {
			continue
		}
		for id, pub := range keys {
			if hsm.VerifySignature(pub, pl, sig) == nil {
				c.SignedBy = id
				return c, nil
			}
		}
	}
	return nil, &trust.VerificationError{What: trust.WhatCosign, Reason: fmt.Sprintf("%s: no signature in %s verifies with a trusted cosign key for %s", image, tag, c.TrustedDigest)}
}

// trustedCosignKeys downloads the cosign.pub target (hash-checked by the
// updater) and parses every PEM key in it.
func trustedCosignKeys(up *updater.Updater) (map[string]crypto.PublicKey, error) {
	tf, err := up.GetTargetInfo(bundle.CosignPubTarget)
	if err != nil {
		return nil, &trust.VerificationError{What: trust.Targets, Reason: "no cosign.pub target: nothing was imported yet", Err: err}
	}
	_, data, err := up.DownloadTarget(tf, "", "")
	if err != nil {
		return nil, tufRefusal(fmt.Errorf("downloading cosign.pub: %w", err))
	}
	keys := map[string]crypto.PublicKey{}
	for rest := data; len(strings.TrimSpace(string(rest))) > 0; {
		pub, next, err := nextPEMKey(rest)
		if err != nil {
			return nil, err
		}
		id, err := trust.KeyID(pub)
		if err != nil {
			return nil, err
		}
		keys[id] = pub
		rest = next
	}
	if len(keys) == 0 {
		return nil, &trust.VerificationError{What: trust.Targets, Reason: "cosign.pub holds no key"}
	}
	return keys, nil
}

func nextPEMKey(data []byte) (crypto.PublicKey, []byte, error) {
	const end = "-----END PUBLIC KEY-----"
	i := strings.Index(string(data), end)
	if i < 0 {
		return nil, nil, fmt.Errorf("cosign.pub: malformed PEM")
	}
	block, rest := data[:i+len(end)], data[i+len(end):]
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(block)
	if err != nil {
		return nil, nil, fmt.Errorf("cosign.pub: %w", err)
	}
	return pub, rest, nil
}

// attestedKeys checks, with the trusted ceremony/attestations.json target,
// that every key whose signature counts on the trusted targets has a
// recorded attestation that verifies against roots, and returns the cosign
// keys narrowed to attested ones.
func attestedKeys(up *updater.Updater, keys map[string]crypto.PublicKey, roots *x509.CertPool) (map[string]crypto.PublicKey, error) {
	tf, err := up.GetTargetInfo(trust.AttestationsTarget)
	if err != nil {
		return nil, &trust.VerificationError{What: trust.WhatAttestation, Reason: fmt.Sprintf("the repository publishes no %s target: no hardware attestation is recorded", trust.AttestationsTarget), Err: err}
	}
	_, data, err := up.DownloadTarget(tf, "", "")
	if err != nil {
		return nil, tufRefusal(fmt.Errorf("downloading %s: %w", trust.AttestationsTarget, err))
	}
	att, err := trust.ParseAttestations(data)
	if err != nil {
		return nil, err
	}
	set := up.GetTrustedMetadataSet()
	if err := trust.RequireAttested(set.Root, trust.Targets, set.Targets[trust.Targets], att, roots); err != nil {
		return nil, err
	}
	out := map[string]crypto.PublicKey{}
	for id, pub := range keys {
		if a := att.Keys[id]; a != nil && hsm.VerifyRecorded(a, pub, roots) == nil {
			out[id] = pub
		}
	}
	return out, nil
}
