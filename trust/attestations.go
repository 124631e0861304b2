package trust

import (
	"crypto/x509"
	"encoding/json"
	"fmt"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
)

// AttestationsTarget is the target that publishes the ceremony
// transcript's attestation records: what each hardware key proved about
// where it was generated, for clients to check against their own CA.
const AttestationsTarget = "ceremony/attestations.json"

// AttestationsFormat is the format of AttestationsTarget.
const AttestationsFormat = "coldharbor.attestations.v1"

// Attestations is the content of AttestationsTarget.
type Attestations struct {
	Format string                      `json:"format"`
	Keys   map[string]*hsm.Attestation `json:"keys"` // key ID → attestation
}

// ParseAttestations reads AttestationsTarget's content.
func ParseAttestations(b []byte) (*Attestations, error) {
	var a Attestations
	if err := json.Unmarshal(b, &a); err != nil || a.Format != AttestationsFormat {
		return nil, &VerificationError{What: WhatAttestation, Reason: fmt.Sprintf("%s is not %s", AttestationsTarget, AttestationsFormat), Err: err}
	}
	return &a, nil
}

// RequireAttested refuses metadata of role signed by any key whose
// hardware attestation is not recorded in att, or does not verify against
// roots (nil: the vendor's, Yubico's PIV CA), or is not about that key.
func RequireAttested[T metadata.Roles](root *metadata.Metadata[metadata.RootType], role string, m *metadata.Metadata[T], att *Attestations, roots *x509.CertPool) error {
	st, err := CheckSignatures(root, role, m)
	if err != nil {
		return err
	}
	for _, id := range st.SignedBy {
		refuse := func(reason string, err error) error {
			return &VerificationError{What: WhatAttestation, Version: metaVersion(m), KeyIDs: []string{id}, Reason: fmt.Sprintf("%s is signed by a key %s", role, reason), Err: err}
		}
		var a *hsm.Attestation
		if att != nil {
			a = att.Keys[id]
		}
		if a == nil {
			return refuse("whose hardware attestation is not recorded", nil)
		}
		pub, err := root.Signed.Keys[id].ToPublicKey()
		if err != nil {
			return refuse("that cannot be read", err)
		}
		if err := hsm.VerifyRecorded(a, pub, roots); err != nil {
			return refuse("whose recorded attestation does not verify", err)
		}
	}
	return nil
}

func metaVersion[T metadata.Roles](m *metadata.Metadata[T]) int64 {
	switch s := any(m.Signed).(type) {
	case metadata.TargetsType:
		return s.Version
	case metadata.RootType:
		return s.Version
	}
	return 0
}
