// Package cosignbundle holds what cosign v3 signs for an image digest and
// the sigstore bundle it stores the signature in: the in-toto statement,
// its DSSE encoding, and a reader of such a bundle. The format package
// (bundle), the importer (mirror) and the pull-only gate (gate) share it.
package cosignbundle

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// Media types, and the predicate of a cosign signature statement.
const (
	BundleType        = "application/vnd.dev.sigstore.bundle.v0.3+json"
	InTotoPayloadType = "application/vnd.in-toto+json"
	SignPredicate     = "https://sigstore.dev/cosign/sign/v1"
)

// Statement is the in-toto statement cosign v3 signs for a container image
// digest (predicate https://sigstore.dev/cosign/sign/v1, an empty
// predicate, the digest as the one subject), byte for byte as cosign
// writes it: the signer and the importer rebuild it from the digest alone,
// so it carries no freedom and needs no head member.
func Statement(digest string) []byte {
	hex := strings.TrimPrefix(digest, "sha256:")
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + hex +
		`"},"annotations":{}}],"predicateType":"` + SignPredicate + `","predicate":{}}`)
}

// StatementPAE is what a sigstore-bundle signature over digest signs: the
// DSSE pre-authentication encoding of the statement.
func StatementPAE(digest string) []byte {
	return dsse.PAE(InTotoPayloadType, Statement(digest))
}

// Bundle is the part of a sigstore bundle v0.3 (JSON) that holds a
// DSSE envelope signed with a key: what cosign v3 writes without a
// transparency log, and what the importer writes for --signature-format
// bundle.
type Bundle struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial struct {
		PublicKey struct {
			Hint string `json:"hint"`
		} `json:"publicKey"`
	} `json:"verificationMaterial"`
	DSSEEnvelope struct {
		Payload     []byte `json:"payload"`
		PayloadType string `json:"payloadType"`
		Signatures  []struct {
			Sig []byte `json:"sig"`
		} `json:"signatures"`
	} `json:"dsseEnvelope"`
}

// New is the bundle of one signature over digest's statement
// by the key whose hint (base64 of the sha256 of its PKIX DER) is given.
func New(digest, hint string, sig []byte) Bundle {
	var b Bundle
	b.MediaType = BundleType
	b.VerificationMaterial.PublicKey.Hint = hint
	b.DSSEEnvelope.Payload = Statement(digest)
	b.DSSEEnvelope.PayloadType = InTotoPayloadType
	b.DSSEEnvelope.Signatures = []struct {
		Sig []byte `json:"sig"`
	}{{Sig: sig}}
	return b
}

// SignedStatement reads a sigstore bundle holding one DSSE signature over
// an in-toto statement of a cosign signature (predicate
// https://sigstore.dev/cosign/sign/v1) with one subject. It returns the
// subject's digest, what was signed (the PAE) and the signature.
func SignedStatement(data []byte) (digest string, pae, sig []byte, err error) {
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return "", nil, nil, fmt.Errorf("not a sigstore bundle: %v", err)
	}
	if len(b.DSSEEnvelope.Signatures) != 1 || b.DSSEEnvelope.PayloadType != InTotoPayloadType {
		return "", nil, nil, fmt.Errorf("not one DSSE signature over an in-toto statement")
	}
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(b.DSSEEnvelope.Payload, &st); err != nil {
		return "", nil, nil, fmt.Errorf("not an in-toto statement: %v", err)
	}
	if st.PredicateType != SignPredicate || len(st.Subject) != 1 || st.Subject[0].Digest["sha256"] == "" {
		return "", nil, nil, fmt.Errorf("not a cosign signature statement about one digest")
	}
	return "sha256:" + st.Subject[0].Digest["sha256"], dsse.PAE(b.DSSEEnvelope.PayloadType, b.DSSEEnvelope.Payload), b.DSSEEnvelope.Signatures[0].Sig, nil
}
