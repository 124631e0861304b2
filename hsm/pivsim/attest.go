package pivsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// Extensions Yubico puts in a per-key attestation certificate
// (developers.yubico.com/PIV/Introduction/PIV_attestation.html). piv-go's
// Attestation parser (key.go addExt) reads their values raw: firmware 3
// bytes, policy 2 bytes (PIN, touch), form factor 1 byte; only the serial
// is DER (an INTEGER).
var (
	oidFirmware   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 3}
	oidSerial     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}
	oidPolicy     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}
	oidFormFactor = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 9}
)

// Certificate names, as on a YubiKey: the f9 certificate is "Yubico PIV
// Attestation", a per-key one "YubiKey PIV Attestation <slot>" (piv-go
// infers the slot from that common name).
const (
	attestKeyCN  = "Yubico PIV Attestation"
	attestLeafCN = "YubiKey PIV Attestation "
	// Tags of a certificate object (SP 800-73-4 Part 1 Appendix A, e.g.
	// Table 11): 70 certificate, 71 CertInfo (00: not compressed), FE the
	// error detection code, empty.
	tagCert     = 0x70
	tagCertInfo = 0x71
	tagEDC      = 0xfe
)

// noExpiry is RFC 5280 §4.1.2.5's "no well-defined expiration date": the
// simulator's chain must not expire under a long-lived state file.
var noExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

func randomSerial(r io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	b[0] &= 0x7f // positive, at most 20 octets (RFC 5280 §4.1.2.2)
	b[0] |= 0x01 // and never zero
	return new(big.Int).SetBytes(b), nil
}

// newCA makes a card's own attestation root, in Yubico's PIV Root CA's role.
func newCA(r io.Reader, serial uint32, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), r)
	if err != nil {
		return nil, nil, fmt.Errorf("attestation CA key: %w", err)
	}
	sn, err := randomSerial(r)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject: pkix.Name{
			CommonName:   fmt.Sprintf("pivsim PIV Attestation CA %d", serial),
			Organization: []string{"coldharbor pivsim (simulated, not Yubico)"},
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              noExpiry,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(r, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("attestation CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("attestation CA certificate: %w", err)
	}
	return cert, key, nil
}

// newAttestationKey makes the f9 key and its certificate, signed by the
// CA: what Yubico's factory puts on each YubiKey.
func newAttestationKey(r io.Reader, serial uint32, ca *x509.Certificate, caKey crypto.Signer, now time.Time) (*slotKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), r)
	if err != nil {
		return nil, nil, fmt.Errorf("attestation key: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("attestation key: %w", err)
	}
	sn, err := randomSerial(r)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: attestKeyCN, SerialNumber: fmt.Sprint(serial)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              noExpiry,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(r, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("attestation certificate: %w", err)
	}
	f9 := &slotKey{Alg: algECCP256, PINPolicy: pinNever, TouchPolicy: touchNever, Origin: originImported, Private: pkcs8}
	return f9, der, nil
}

// certObject is a certificate as a PIV certificate object stores it.
func certObject(der []byte) []byte {
	out := tlv(tagCert, der)
	out = append(out, tlv(tagCertInfo, []byte{0x00})...)
	return append(out, tlv(tagEDC, nil)...)
}

// attestationCert issues the per-key certificate ATTEST returns: the
// slot's public key, Yubico's extensions, signed by the key in f9 under
// the certificate in 5FFF01, valid as long as that certificate.
func (c *Card) attestationCert(slot byte, key *slotKey) ([]byte, error) {
	f9 := c.st.Keys[slotName(slotAttest)]
	if f9 == nil {
		return nil, errors.New("no attestation key in slot f9")
	}
	f9Key, err := f9.signer()
	if err != nil {
		return nil, err
	}
	items, err := parseTLVs(c.st.Objects[objectName(objAttestCert)])
	if err != nil {
		return nil, fmt.Errorf("attestation certificate object: %w", err)
	}
	f9DER, found := findTLV(items, tagCert)
	if !found {
		return nil, errors.New("no attestation certificate in object 5fff01")
	}
	issuer, err := x509.ParseCertificate(f9DER)
	if err != nil {
		return nil, fmt.Errorf("attestation certificate: %w", err)
	}
	s, err := key.signer()
	if err != nil {
		return nil, err
	}
	serial, err := asn1.Marshal(int64(c.st.Serial))
	if err != nil {
		return nil, fmt.Errorf("encoding serial: %w", err)
	}
	sn, err := randomSerial(c.rand)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: attestLeafCN + slotName(slot)},
		NotBefore:    issuer.NotBefore,
		NotAfter:     issuer.NotAfter,
		ExtraExtensions: []pkix.Extension{
			{Id: oidFirmware, Value: firmware[:]},
			{Id: oidSerial, Value: serial},
			{Id: oidPolicy, Value: []byte{key.PINPolicy, key.TouchPolicy}},
			{Id: oidFormFactor, Value: []byte{formFactor}},
		},
	}
	der, err := x509.CreateCertificate(c.rand, tmpl, issuer, s.Public(), f9Key)
	if err != nil {
		return nil, fmt.Errorf("per-key attestation certificate: %w", err)
	}
	return der, nil
}
