package hsm

import (
	"crypto/x509"
	"errors"
)

// Attestation is what a hardware key proves about itself: that the key was
// generated on the device, with these policies, on a device with this
// serial and firmware. It is recorded in the ceremony transcript.
type Attestation struct {
	Kind        string `json:"kind"` // "yubikey"
	Serial      uint32 `json:"serial"`
	Firmware    string `json:"firmware"`
	Slot        string `json:"slot"`
	PINPolicy   string `json:"pin_policy"`
	TouchPolicy string `json:"touch_policy"`
	FormFactor  string `json:"form_factor,omitempty"`
	// SlotCertificate is the per-key attestation certificate (PEM), signed
	// by the device's attestation key; DeviceCertificate is that key's
	// certificate (PEM), signed by the vendor CA.
	SlotCertificate   string `json:"slot_certificate"`
	DeviceCertificate string `json:"device_certificate"`
}

// ErrNoAttestation is returned for keys that cannot prove where they were
// generated (files, imported keys, tokens without attestation).
var ErrNoAttestation = errors.New("this key has no hardware attestation")

// AttestFunc verifies a key's attestation chain against roots (nil: the
// vendor's own roots, e.g. Yubico's PIV CA) and returns what it proves.
type AttestFunc func(roots *x509.CertPool) (*Attestation, error)

// ErrAttestation: the attestation chain does not verify against the roots.
var ErrAttestation = errors.New("attestation does not verify")
