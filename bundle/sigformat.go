package bundle

import (
	"fmt"

	"github.com/coldharbor/coldharbor/internal/cosignbundle"
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

// InTotoPayloadType is the DSSE payload type of an in-toto statement.
const InTotoPayloadType = cosignbundle.InTotoPayloadType

// SigstoreBundle is a sigstore bundle v0.3 holding one DSSE signature.
type SigstoreBundle = cosignbundle.Bundle

// Statement is the in-toto statement cosign v3 signs for digest, byte for
// byte as cosign writes it (docs/bundle-format.md 5a).
func Statement(digest string) []byte { return cosignbundle.Statement(digest) }

// StatementPAE is what a sigstore-bundle signature over digest signs.
func StatementPAE(digest string) []byte { return cosignbundle.StatementPAE(digest) }

// NewSigstoreBundle is the bundle of one signature over digest's statement.
func NewSigstoreBundle(digest, hint string, sig []byte) SigstoreBundle {
	return cosignbundle.New(digest, hint, sig)
}

// SignedStatement reads a cosign signature's sigstore bundle: the subject
// digest, the signed PAE and the signature.
func SignedStatement(data []byte) (digest string, pae, sig []byte, err error) {
	return cosignbundle.SignedStatement(data)
}
