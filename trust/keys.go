package trust

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
)

// KeyID returns the TUF key ID of a public key: sha256 of the canonical JSON
// of its TUF key object, as go-tuf computes it.
func KeyID(pub crypto.PublicKey) (string, error) {
	k, err := tufKey(pub)
	if err != nil {
		return "", err
	}
	return k.ID()
}

func tufKey(pub crypto.PublicKey) (*metadata.Key, error) {
	if err := hsm.CheckPublicKey(pub); err != nil {
		return nil, err
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("converting public key: %w", err)
	}
	return k, nil
}

// Attest verifies a hardware key's attestation against roots (nil: the
// vendor's); one that does not verify is a refusal.
func Attest(k *hsm.Key, roots *x509.CertPool) (*hsm.Attestation, error) {
	if k.Attest == nil {
		return nil, fmt.Errorf("%s: %w", k.URI, hsm.ErrNoAttestation)
	}
	a, err := k.Attest(roots)
	if errors.Is(err, hsm.ErrAttestation) {
		return nil, &VerificationError{What: WhatAttestation, Reason: k.URI.String() + ": the key's attestation does not chain to a trusted root", Err: err}
	}
	return a, err
}

// Sign adds one signature per signer to meta. A signer whose key already
// signed is skipped, so a threshold is never met by one key twice.
func Sign[T metadata.Roles](meta *metadata.Metadata[T], role string, signers ...hsm.Signer) error {
	for _, s := range signers {
		id, err := KeyID(s.Public())
		if err != nil {
			return err
		}
		if hasSignature(meta.Signatures, id) {
			continue
		}
		// go-tuf replaces the signer's error with a generic one ("problem
		// signing metadata"); keep the real one (wrong PIN, card removed).
		rec := &errRecorder{Signer: s}
		if _, err := meta.Sign(rec); err != nil {
			if rec.err != nil {
				err = rec.err
			}
			return fmt.Errorf("signing %s with key %s: %w", role, short(id), err)
		}
	}
	return nil
}

func hasSignature(sigs []metadata.Signature, id string) bool {
	for _, s := range sigs {
		if s.KeyID == id {
			return true
		}
	}
	return false
}

type errRecorder struct {
	hsm.Signer
	err error
}

func (r *errRecorder) SignMessage(msg io.Reader, opts ...signature.SignOption) ([]byte, error) {
	sig, err := r.Signer.SignMessage(msg, opts...)
	r.err = err
	return sig, err
}

// short abbreviates a key ID for messages; full IDs go in JSON output.
func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}
