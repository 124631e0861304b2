package mirror

import (
	"bytes"
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
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
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
	// Platforms: for an index, each child manifest's signature, verified.
	Platforms []PlatformCheck `json:"platforms,omitempty"`
}

// VerifyOptions configure VerifyImages.
type VerifyOptions struct {
	// Registry is HOST[/PREFIX] the targets are relative to; empty: each
	// image's own registry, no prefix.
	Registry string
	Remote   []remote.Option
	// InsecureRegistries are the hosts ("host" or "host:port") named with
	// --insecure-registry: images there are parsed with name.Insecure so
	// go-containerregistry tries plain HTTP (the transport must allow it).
	InsecureRegistries []string
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
		c, err := verifyImage(up, keys, image, o.Registry, o.InsecureRegistries, ropts)
		if err != nil {
			return out, err
		}
		c.TargetsVersion = tg.Signed.Version
		out = append(out, *c)
	}
	return out, nil
}

func verifyImage(up *updater.Updater, keys map[string]crypto.PublicKey, image, registry string, insecure []string, ropts []remote.Option) (*Check, error) {
	ref, err := name.NewTag(image, regsession.NameOptions(insecure, image, name.StrictValidation)...)
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
	if c.SignedBy, c.SignatureTag, err = verifySignature(ref.Context(), c.TrustedDigest, keys, ropts); err != nil {
		return nil, fmt.Errorf("%s: %w", image, err)
	}
	// The signed media type, not the registry's answer, says whether
	// there are platform manifests to check.
	if types.MediaType(custom(tf).MediaType).IsIndex() {
		if c.Platforms, err = verifyChildren(ref.Context(), c.TrustedDigest, keys, ropts); err != nil {
			return nil, fmt.Errorf("%s: %w", image, err)
		}
	}
	return c, nil
}

// verifySignature finds a signature by a trusted key over digest: in its
// .sig tag (legacy), or else as a sigstore bundle among its referrers
// (import --signature-format bundle, or auto on a digest the vendor signed
// so). It returns the key ID and where the signature is.
func verifySignature(repo name.Repository, digest string, keys map[string]crypto.PublicKey, ropts []remote.Option) (keyID, where string, err error) {
	tag, _ := SignatureTag(digest)
	if id, ok := verifyLegacy(repo.Tag(tag), digest, keys, ropts); ok {
		return id, tag, nil
	}
	if id, ref, ok := verifyBundles(repo.Digest(digest), keys, ropts); ok {
		return id, ref, nil
	}
	return "", tag, &trust.VerificationError{What: trust.WhatCosign, Reason: fmt.Sprintf("no signature verifies with a trusted cosign key for %s (neither in %s nor in a sigstore bundle among its referrers)", digest, tag)}
}

// PlatformCheck is what verify found for one child manifest of an index.
type PlatformCheck struct {
	Digest   string `json:"digest"`
	Platform string `json:"platform,omitempty"`
	SignedBy string `json:"signed_by"`
}

// verifyChildren checks a cosign signature by a trusted key on every
// manifest the trusted index lists: clients pull platform manifests by
// digest, and import signs each.
func verifyChildren(repo name.Repository, digest string, keys map[string]crypto.PublicKey, ropts []remote.Option) ([]PlatformCheck, error) {
	d, err := remote.Get(repo.Digest(digest), ropts...) // by digest: ggcr checks the bytes' digest
	if err != nil {
		return nil, fmt.Errorf("reading index %s: %w", digest, err)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(d.Manifest))
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", digest, err)
	}
	var out []PlatformCheck
	for _, m := range im.Manifests {
		pc := PlatformCheck{Digest: m.Digest.String()}
		if m.Platform != nil {
			pc.Platform = m.Platform.String()
		}
		if pc.SignedBy, _, err = verifySignature(repo, pc.Digest, keys, ropts); err != nil {
			return nil, fmt.Errorf("platform manifest %s %s: %w", pc.Platform, pc.Digest, err)
		}
		out = append(out, pc)
	}
	return out, nil
}

// verifyLegacy looks in a .sig tag for a simple-signing layer naming
// digest whose signature verifies with one of keys.
func verifyLegacy(sigTag name.Tag, digest string, keys map[string]crypto.PublicKey, ropts []remote.Option) (string, bool) {
	sigImg, err := remote.Image(sigTag, ropts...)
	if err != nil {
		return "", false
	}
	m, err := sigImg.Manifest()
	if err != nil || len(m.Layers) > maxSigLayers {
		return "", false
	}
	// Each payload is read once, by digest straight from the registry
	// (ggcr's LayerByDigest searches the manifest again for every layer:
	// quadratic in the layers), and each (payload, signature) tried once.
	payloads := map[v1.Hash][]byte{}
	tried := map[string]bool{}
	for _, l := range m.Layers {
		if l.MediaType != SimpleSigningMediaType || l.Size > 64<<10 {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
		if err != nil || tried[l.Digest.String()+"\x00"+string(sig)] {
			continue
		}
		tried[l.Digest.String()+"\x00"+string(sig)] = true
		pl, ok := payloads[l.Digest]
		if !ok {
			if pl, err = smallBlob(sigTag.Context().Digest(l.Digest.String()), ropts); err != nil {
				continue
			}
			payloads[l.Digest] = pl
		}
		var p payload.Cosign
		if json.Unmarshal(pl, &p) != nil || p.Image.DigestStr() != digest {
			continue
		}
		for id, pub := range keys {
			if hsm.VerifySignature(pub, pl, sig) == nil {
				return id, true
			}
		}
	}
	return "", false
}

// verifyBundles looks among digest's referrers (API or referrers tag) for
// a sigstore bundle whose statement names digest and whose DSSE signature
// verifies with one of keys.
func verifyBundles(d name.Digest, keys map[string]crypto.PublicKey, ropts []remote.Option) (id, where string, ok bool) {
	idx, err := remote.Referrers(d, ropts...)
	if err != nil {
		return "", "", false
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return "", "", false
	}
	for i, desc := range im.Manifests {
		// Some registries list the config's media type as artifactType (the
		// empty one here): look inside unless it names another type.
		if i >= maxSigLayers || (desc.ArtifactType != bundle.SigstoreBundleType && desc.ArtifactType != "application/vnd.oci.empty.v1+json" && desc.ArtifactType != "") {
			continue
		}
		img, err := remote.Image(d.Context().Digest(desc.Digest.String()), ropts...)
		if err != nil {
			continue
		}
		m, err := img.Manifest()
		if err != nil || len(m.Layers) != 1 || m.Layers[0].MediaType != bundle.SigstoreBundleType || m.Layers[0].Size > 64<<10 {
			continue
		}
		data, err := smallLayer(img, m.Layers[0].Digest)
		if err != nil {
			continue
		}
		subject, pae, sig, err := bundle.SignedStatement(data)
		if err != nil || subject != d.DigestStr() {
			continue
		}
		for kid, pub := range keys {
			if hsm.VerifySignature(pub, pae, sig) == nil {
				return kid, "referrer " + desc.Digest.String(), true
			}
		}
	}
	return "", "", false
}

// smallBlob reads one blob of at most 64 KiB by its digest (ggcr checks
// the digest as it reads).
func smallBlob(d name.Digest, ropts []remote.Option) ([]byte, error) {
	layer, err := remote.Layer(d, ropts...)
	if err != nil {
		return nil, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 64<<10))
}

// smallLayer reads one layer of at most 64 KiB.
func smallLayer(img v1.Image, h v1.Hash) ([]byte, error) {
	layer, err := img.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 64<<10))
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
