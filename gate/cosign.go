package gate

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/coldharbor/coldharbor/internal/cosignbundle"
)

// cosign 2.x signature layout (docs/design.md, section 4): one layer per signature, of this
// media type, the payload as blob and the base64 DER signature in this
// annotation.
const (
	simpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	signatureAnnotation    = "dev.cosignproject.cosign/signature"
	maxPayloadSize         = 64 << 10
	maxSignatureLayers     = 64
)

type sigManifest struct {
	Layers []struct {
		descriptor
		Annotations map[string]string `json:"annotations"`
	} `json:"layers"`
}

// checkSignature returns "" when upstream holds a cosign signature over t's
// digest by a key of the trusted cosign.pub, and otherwise why not.
func (g *Gate) checkSignature(ctx context.Context, st *state, repo string, t target) string {
	// Our signature as a sigstore bundle (import --signature-format
	// bundle, or auto where the vendor signed so) counts as well.
	if g.bundleSigned(ctx, st, repo, t.digest) {
		return ""
	}
	tag := attachmentTag(t.digest, "sig")
	m, err := g.up.fetchManifest(ctx, repo, tag, v1.Hash{}, 0)
	if err != nil {
		return fmt.Sprintf("%s (%s) has no cosign signature upstream (%s: %v, and no sigstore bundle among its referrers) and --require-signature is set", t.name, t.digest, tag, err)
	}
	var sm sigManifest
	if err := json.Unmarshal(m.raw, &sm); err != nil {
		return fmt.Sprintf("%s: the signature manifest %s is not a manifest: %v", t.name, tag, err)
	}
	for i, l := range sm.Layers {
		if i >= maxSignatureLayers {
			break
		}
		if l.MediaType != simpleSigningMediaType || l.Size > maxPayloadSize {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[signatureAnnotation])
		if err != nil {
			continue
		}
		payload, err := g.readPayload(ctx, repo, l.descriptor)
		if err != nil {
			g.log.Warn("signature payload", "target", t.name, "err", err)
			continue
		}
		if signs(payload, t.digest) && verifiesWithAny(st, payload, sig) {
			return ""
		}
	}
	return fmt.Sprintf("no cosign signature in %s verifies with a key of the trusted cosign.pub for %s (%s), and --require-signature is set", tag, t.name, t.digest)
}

// bundleSigned reports whether a referrer of digest upstream lists
// (upstream.referrers: the referrers API, or the fallback tag sha256-<hex>)
// is a sigstore bundle whose statement names digest and whose DSSE
// signature verifies with a trusted cosign key.
func (g *Gate) bundleSigned(ctx context.Context, st *state, repo string, digest v1.Hash) bool {
	list, err := g.up.referrers(ctx, repo, digest)
	if err != nil {
		return false
	}
	p := list.index
	for i, d := range p.Manifests {
		if i >= maxReferrers {
			break
		}
		m, err := g.up.fetchManifest(ctx, repo, "", d.Digest, d.Size)
		if err != nil {
			continue
		}
		var sm sigManifest
		if json.Unmarshal(m.raw, &sm) != nil || len(sm.Layers) != 1 || sm.Layers[0].MediaType != cosignbundle.BundleType || sm.Layers[0].Size > maxPayloadSize {
			continue
		}
		data, err := g.readPayload(ctx, repo, sm.Layers[0].descriptor)
		if err != nil {
			continue
		}
		subject, pae, sig, err := cosignbundle.SignedStatement(data)
		if err == nil && subject == digest.String() && verifiesWithAny(st, pae, sig) {
			return true
		}
	}
	return false
}

// signs reports whether a cosign simple-signing payload names digest.
func signs(payload []byte, digest v1.Hash) bool {
	var p struct {
		Critical struct {
			Image struct {
				Digest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
	}
	return json.Unmarshal(payload, &p) == nil && p.Critical.Image.Digest == digest.String() &&
		p.Critical.Type == "cosign container image signature"
}

func verifiesWithAny(st *state, payload, sig []byte) bool {
	h := sha256.Sum256(payload)
	for _, k := range st.keys {
		if ec, ok := k.(*ecdsa.PublicKey); ok && ecdsa.VerifyASN1(ec, h[:], sig) {
			return true
		}
	}
	return false
}

// readPayload reads a small blob, checked against its descriptor.
func (g *Gate) readPayload(ctx context.Context, repo string, d descriptor) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, manifestTimeout)
	defer cancel()
	resp, err := g.up.get(ctx, http.MethodGet, repo, "blobs", d.Digest.String(), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, d.Size+1))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != d.Size || hex.EncodeToString(sum[:]) != d.Digest.Hex {
		return nil, &digestError{want: d.Digest.String(), got: "sha256:" + hex.EncodeToString(sum[:])}
	}
	return data, nil
}
