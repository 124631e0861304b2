package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/sigstore/sigstore/pkg/signature"
)

// Signer is what every backend returns: a crypto.Signer that also satisfies
// sigstore's signature.Signer (go-tuf's Metadata.Sign takes the latter).
type Signer interface {
	crypto.Signer
	signature.Signer
}

// Key is a key named by a URI. Signer is nil when only the public half is
// held here (a public-key PEM for a key that lives at another site).
type Key struct {
	URI    URI
	Public crypto.PublicKey
	Signer Signer
	// Close releases the backend (a card handle, an HSM session). Never nil.
	Close func() error
	// Attest is set for hardware keys that can prove they were generated
	// on the device (YubiKeys); nil otherwise.
	Attest AttestFunc
}

// Private reports whether this key can sign here.
func (k *Key) Private() bool { return k.Signer != nil }

// ErrUnsupportedKey is returned for any key that is not ECDSA P-256.
var ErrUnsupportedKey = errors.New("unsupported key type: coldharbor uses ECDSA P-256 keys only")

// CheckPublicKey refuses keys that TUF clients would mis-verify: go-tuf
// labels every ECDSA key ecdsa-sha2-nistp256 and hashes with SHA-256, so
// only P-256 round-trips.
func CheckPublicKey(pub crypto.PublicKey) error {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w (got %T)", ErrUnsupportedKey, pub)
	}
	if ec.Curve != elliptic.P256() {
		return fmt.Errorf("%w (got curve %s)", ErrUnsupportedKey, ec.Curve.Params().Name)
	}
	return nil
}

// NewSigner wraps any crypto.Signer holding a P-256 key (a software key,
// piv-go's card key, a PKCS#11 object) so that it also satisfies sigstore's
// signature.Signer: the message is hashed with SHA-256 here and only the
// digest goes to the device, which is what cards and SoftHSM2 need.
func NewSigner(s crypto.Signer) (Signer, error) {
	if err := CheckPublicKey(s.Public()); err != nil {
		return nil, err
	}
	return digestSigner{s}, nil
}

type digestSigner struct{ crypto.Signer }

func (d digestSigner) SignMessage(msg io.Reader, _ ...signature.SignOption) ([]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, msg); err != nil {
		return nil, fmt.Errorf("hashing message: %w", err)
	}
	return d.Sign(rand.Reader, h.Sum(nil), crypto.SHA256)
}

func (d digestSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return d.Public(), nil
}

// VerifySignature checks a DER ECDSA signature over SHA-256(msg) with pub.
func VerifySignature(pub crypto.PublicKey, msg, sig []byte) error {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w (got %T)", ErrUnsupportedKey, pub)
	}
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(ec, h[:], sig) {
		return errors.New("signature does not verify")
	}
	return nil
}

// SecretKind says which secret a backend asks for.
type SecretKind int

const (
	Password SecretKind = iota + 1 // an encrypted key file's password
	PIN                            // a card's or token's PIN
)

// SecretRequest describes the secret a backend needs, so the caller can
// prompt for it ("password for file:root1.key").
type SecretRequest struct {
	Kind SecretKind
	// Key is the URI of the key, without secrets.
	Key URI
	// Confirm asks for the secret twice (a new key being encrypted).
	Confirm bool
}

// SecretFunc supplies a password or PIN. It must never log what it returns.
type SecretFunc func(ctx context.Context, req SecretRequest) ([]byte, error)
