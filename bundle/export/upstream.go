package export

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/trust"
)

// UpstreamKey is a public key an image's vendor signs with
// (--verify-upstream-key): the export refuses an image none of the keys
// has signed.
type UpstreamKey struct {
	Name string // as given: the file, or "PEM" for a key given inline
	ID   string // sha256:<hex> of the key's PKIX DER
	v    signature.Verifier
}

// LoadUpstreamKey reads a PEM public key from a file, or from arg itself
// when it is a PEM block (cosign.pub format).
func LoadUpstreamKey(arg string) (UpstreamKey, error) {
	k := UpstreamKey{Name: arg}
	data := []byte(arg)
	if !strings.Contains(arg, "-----BEGIN") {
		b, err := os.ReadFile(arg)
		if err != nil {
			return UpstreamKey{}, fmt.Errorf("upstream key: %w", err)
		}
		data = b
	} else {
		k.Name = "PEM"
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return UpstreamKey{}, fmt.Errorf("upstream key %s: not a PEM public key: %w", k.Name, err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return UpstreamKey{}, fmt.Errorf("upstream key %s: %w", k.Name, err)
	}
	sum := sha256.Sum256(der)
	k.ID = "sha256:" + hex.EncodeToString(sum[:])
	if k.v, err = signature.LoadVerifier(pub, crypto.SHA256); err != nil {
		return UpstreamKey{}, fmt.Errorf("upstream key %s: %w", k.Name, err)
	}
	return k, nil
}

// verifyUpstream finds, among the signatures carried with img (attached to
// its own digest), one that verifies with one of keys: a cosign .sig layer
// (simple-signing payload naming the digest) or a cosign v3 sigstore bundle
// (DSSE over an in-toto statement whose subject is the digest). No such
// signature is a refusal: nothing has been written yet.
func (c *collector) verifyUpstream(repo name.Repository, img bundle.Image, keys []UpstreamKey) (*bundle.UpstreamCheck, error) {
	checked := 0
	for _, a := range img.Attachments {
		if a.Subject != img.Digest || !a.IsSignatureOnly() {
			continue
		}
		m, err := bundle.ParseAttachment(c.manifests[mustHash(a.Digest)], types.MediaType(a.MediaType))
		if err != nil {
			continue
		}
		for _, l := range m.Layers {
			checked++
			data, err := c.smallBlob(repo, l)
			if err != nil {
				return nil, fmt.Errorf("%s: reading upstream signature %s: %w", img.Name, a.Digest, err)
			}
			format, msg, sig, ok := signedMessage(a, l, data, img.Digest)
			if !ok {
				continue
			}
			for _, k := range keys {
				if k.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)) == nil {
					return &bundle.UpstreamCheck{Key: k.ID, Signature: a.Digest, Format: format}, nil
				}
			}
		}
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.Name + " (" + k.ID + ")"
	}
	return nil, &trust.VerificationError{What: trust.WhatCosign, Reason: fmt.Sprintf(
		"%s (%s): no upstream cosign signature verifies with %s (%d signature(s) carried on the digest; a signature whose attachments were left out is not checked)",
		img.Name, img.Digest, strings.Join(ids, ", "), checked)}
}

// signedMessage returns what one signature layer signs, and the signature,
// when the layer is a signature over digest in a format we read.
func signedMessage(a bundle.Attachment, l v1.Descriptor, data []byte, digest string) (format string, msg, sig []byte, ok bool) {
	if a.Tag != "" {
		var p struct {
			Critical struct {
				Image struct {
					Digest string `json:"docker-manifest-digest"`
				} `json:"image"`
			} `json:"critical"`
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations["dev.cosignproject.cosign/signature"])
		if err != nil || json.Unmarshal(data, &p) != nil || p.Critical.Image.Digest != digest {
			return "", nil, nil, false
		}
		return "legacy", data, sig, true
	}
	if string(l.MediaType) != bundle.SigstoreBundleType {
		return "", nil, nil, false
	}
	d, pae, sig, err := bundle.SignedStatement(data)
	if err != nil || d != digest {
		return "", nil, nil, false
	}
	return "bundle", pae, sig, true
}

// smallBlob fetches a small blob (a config, a signature layer: at most
// MaxManifestSize bytes) and checks its size and digest.
func (c *collector) smallBlob(repo name.Repository, d v1.Descriptor) ([]byte, error) {
	if d.Size > bundle.MaxManifestSize {
		return nil, fmt.Errorf("%d bytes is over the limit of %d", d.Size, bundle.MaxManifestSize)
	}
	l, err := remote.Layer(repo.Digest(d.Digest.String()), c.opts...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != d.Size {
		return nil, errors.New("size differs from its descriptor")
	}
	if h, _, _ := v1.SHA256(bytes.NewReader(data)); h != d.Digest {
		return nil, errors.New("content does not match its digest")
	}
	return data, nil
}

func mustHash(s string) v1.Hash {
	h, _ := v1.NewHash(s)
	return h
}
