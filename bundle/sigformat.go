package bundle

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// Our own signature's formats (export and import --signature-format).
const (
	// SigLegacy is cosign 2.x's simple-signing payload under the
	// sha256-<hex>.sig tag: the signer signs only that.
	SigLegacy = "legacy"
	// SigBundle is cosign 3.x's sigstore bundle: a DSSE envelope over an
	// in-toto statement, attached to the digest as an OCI 1.1 referrer.
	SigBundle = "bundle"
	// SigAuto lets the importer decide per target and digest; the signer
	// signs both.
	SigAuto = "auto"
)

// InTotoPayloadType is the DSSE payload type of an in-toto statement.
const InTotoPayloadType = "application/vnd.in-toto+json"

// ValidSignatureFormat checks a --signature-format value ("" is legacy in
// the library; the CLI's default is auto).
func ValidSignatureFormat(f string) error {
	switch f {
	case "", SigLegacy, SigBundle, SigAuto:
		return nil
	}
	return fmt.Errorf("signature format %q: want legacy, bundle or auto", f)
}

// SignsBundles reports whether a bundle exported with format f asks the
// signer for sigstore-bundle signatures too.
func SignsBundles(f string) bool { return f == SigBundle || f == SigAuto }

// Statement is the in-toto statement cosign v3 signs for a container image
// digest (predicate https://sigstore.dev/cosign/sign/v1, an empty
// predicate, the digest as the one subject), byte for byte as cosign
// writes it: the signer and the importer rebuild it from the digest alone,
// so it carries no freedom and needs no head member.
func Statement(digest string) []byte {
	hex := strings.TrimPrefix(digest, "sha256:")
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + hex +
		`"},"annotations":{}}],"predicateType":"` + CosignSignPredicate + `","predicate":{}}`)
}

// StatementPAE is what a sigstore-bundle signature over digest signs: the
// DSSE pre-authentication encoding of the statement.
func StatementPAE(digest string) []byte {
	return dsse.PAE(InTotoPayloadType, Statement(digest))
}

// SigstoreBundle is the part of a sigstore bundle v0.3 (JSON) that holds a
// DSSE envelope signed with a key: what cosign v3 writes without a
// transparency log, and what the importer writes for --signature-format
// bundle.
type SigstoreBundle struct {
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

// NewSigstoreBundle is the bundle of one signature over digest's statement
// by the key whose hint (base64 of the sha256 of its PKIX DER) is given.
func NewSigstoreBundle(digest, hint string, sig []byte) SigstoreBundle {
	var b SigstoreBundle
	b.MediaType = SigstoreBundleType
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
	var b SigstoreBundle
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
	if st.PredicateType != CosignSignPredicate || len(st.Subject) != 1 || st.Subject[0].Digest["sha256"] == "" {
		return "", nil, nil, fmt.Errorf("not a cosign signature statement about one digest")
	}
	return "sha256:" + st.Subject[0].Digest["sha256"], dsse.PAE(b.DSSEEnvelope.PayloadType, b.DSSEEnvelope.Payload), b.DSSEEnvelope.Signatures[0].Sig, nil
}
