//go:build cgo

package hsm

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/go-piv/piv-go/v2/piv"
)

// The yubikey: backend talks to YubiKeys through piv-go over PC/SC (pcscd
// on Linux). The same code runs against hardware and against hsm/pivsim on
// vsmartcard-vpcd: nothing here knows which it is.

// slotByName maps the URI's slot attribute to piv-go's slots. 9c (digital
// signature, SP 800-73-4 table 4b) is the default: it is the slot meant for
// signing and the one whose PIN policy YubiKeys default to "always".
func slotByName(s string) (piv.Slot, error) {
	switch strings.ToLower(s) {
	case "", "9c":
		return piv.SlotSignature, nil
	case "9a":
		return piv.SlotAuthentication, nil
	case "9d":
		return piv.SlotKeyManagement, nil
	case "9e":
		return piv.SlotCardAuthentication, nil
	}
	n, err := strconv.ParseUint(s, 16, 32)
	if err == nil {
		if slot, ok := piv.RetiredKeyManagementSlot(uint32(n)); ok {
			return slot, nil
		}
	}
	return piv.Slot{}, fmt.Errorf("slot %q: use 9a, 9c, 9d, 9e or a retired slot 82-95", s)
}

// openCard opens the YubiKey a URI names: by serial, or the only one present.
func openCard(u URI) (*piv.YubiKey, uint32, error) {
	cards, err := piv.Cards()
	if err != nil {
		return nil, 0, fmt.Errorf("%w: listing smart card readers: %v (is pcscd running?)", ErrNoCard, err)
	}
	want := u.Attrs["serial"]
	type found struct {
		yk     *piv.YubiKey
		serial uint32
		reader string
	}
	var keys []found
	var notYubiKey []string
	for _, c := range cards {
		yk, err := piv.Open(c)
		if err != nil {
			notYubiKey = append(notYubiKey, c)
			continue
		}
		serial, err := yk.Serial()
		if err != nil {
			yk.Close()
			notYubiKey = append(notYubiKey, c)
			continue
		}
		if want != "" && strconv.FormatUint(uint64(serial), 10) != want {
			yk.Close()
			continue
		}
		keys = append(keys, found{yk, serial, c})
	}
	switch {
	case len(keys) == 1:
		return keys[0].yk, keys[0].serial, nil
	case len(keys) > 1:
		var serials []string
		for _, k := range keys {
			serials = append(serials, strconv.FormatUint(uint64(k.serial), 10))
			k.yk.Close()
		}
		return nil, 0, fmt.Errorf("%d YubiKeys are plugged in (serials %s): name one, e.g. yubikey:serial=%s", len(keys), strings.Join(serials, ", "), serials[0])
	}
	foreign := ""
	if len(notYubiKey) > 0 {
		foreign = fmt.Sprintf("; the card in %q is not a YubiKey, or has no PIV application", strings.Join(notYubiKey, `", "`))
	}
	if want != "" {
		return nil, 0, fmt.Errorf("%w with serial %s (%d reader(s) seen%s)", ErrNoCard, want, len(cards), foreign)
	}
	if foreign != "" {
		return nil, 0, fmt.Errorf("%w%s", ErrNoCard, foreign)
	}
	return nil, 0, fmt.Errorf("%w: plug one in (and check that pcscd is running)", ErrNoCard)
}

// pivError turns piv-go's authentication errors into ours.
func pivError(err error) error {
	var ae piv.AuthErr
	if errors.As(err, &ae) {
		if ae.Retries == 0 {
			return fmt.Errorf("%w: the YubiKey's PUK unblocks it", ErrPINBlocked)
		}
		return &PINError{Retries: ae.Retries}
	}
	return err
}

func openYubiKey(ctx context.Context, u URI, o *options) (*Key, error) {
	slot, err := slotByName(u.Attrs["slot"])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	yk, serial, err := openCard(u)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			yk.Close()
		}
	}()
	pub, err := slotPublicKey(yk, slot)
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: %w", serial, slot, err)
	}
	if err := CheckPublicKey(pub); err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: %w", serial, slot, err)
	}
	canonical := URI{Scheme: SchemeYubiKey, Attrs: map[string]string{"serial": strconv.FormatUint(uint64(serial), 10), "slot": fmt.Sprintf("%x", slot.Key)}}
	key := &Key{URI: canonical, Public: pub, Close: yk.Close, Attest: attestFunc(yk, slot, pub, serial)}
	// Only the public half is needed for a ceremony's key list and for
	// attestation; the PIN is asked for when signing is possible at all,
	// and checked now so a wrong PIN fails here, with retries, not inside
	// go-tuf (which would hide it).
	if o.secret == nil {
		ok = true
		return key, nil
	}
	pin, err := o.secret(ctx, SecretRequest{Kind: PIN, Key: canonical})
	if err != nil {
		return nil, err
	}
	if err := yk.VerifyPIN(string(pin)); err != nil {
		return nil, fmt.Errorf("YubiKey %d: %w", serial, pivError(err))
	}
	priv, err := yk.PrivateKey(slot, pub, piv.KeyAuth{PIN: string(pin)})
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: %w", serial, slot, err)
	}
	cs, isSigner := priv.(crypto.Signer)
	if !isSigner {
		return nil, fmt.Errorf("YubiKey %d slot %s: key cannot sign", serial, slot)
	}
	s, err := NewSigner(touchNotice{cs, o.notify, serial})
	if err != nil {
		return nil, err
	}
	key.Signer = s
	ok = true
	return key, nil
}

// touchNotice tells the holder to touch the key before a signature that may
// wait for it (touch policy always or cached).
type touchNotice struct {
	crypto.Signer
	notify func(string)
	serial uint32
}

func (t touchNotice) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if t.notify != nil {
		t.notify(fmt.Sprintf("touch the YubiKey %d if it blinks", t.serial))
	}
	return t.Signer.Sign(r, digest, opts)
}

// slotPublicKey reads a slot's public key: from GET METADATA on firmware
// 5.3 and later, else from the slot's attestation.
func slotPublicKey(yk *piv.YubiKey, slot piv.Slot) (crypto.PublicKey, error) {
	if ki, err := yk.KeyInfo(slot); err == nil && ki.PublicKey != nil {
		return ki.PublicKey, nil
	}
	cert, err := yk.Attest(slot)
	if err != nil {
		if errors.Is(err, piv.ErrNotFound) {
			return nil, fmt.Errorf("slot %s: %w", slot, ErrNoKey)
		}
		return nil, err
	}
	return cert.PublicKey, nil
}

// attestFunc verifies the slot's attestation and that it is about this very
// key on this very card: an attestation pair is public (every transcript
// holds one), so a card replaying a genuine pair while signing with another
// key must not pass.
func attestFunc(yk *piv.YubiKey, slot piv.Slot, pub crypto.PublicKey, serial uint32) AttestFunc {
	return func(roots *x509.CertPool) (*Attestation, error) {
		device, err := yk.AttestationCertificate()
		if err != nil {
			return nil, fmt.Errorf("reading the attestation certificate: %w", err)
		}
		slotCert, err := yk.Attest(slot)
		if err != nil {
			return nil, fmt.Errorf("attesting slot %s: %w", slot, err)
		}
		v := piv.Verifier{Roots: roots}
		a, err := v.Verify(device, slotCert)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrAttestation, err)
		}
		if !sameKey(slotCert.PublicKey, pub) {
			return nil, fmt.Errorf("%w: the attested key is not the key in slot %s", ErrAttestation, slot)
		}
		if a.Serial != serial {
			return nil, fmt.Errorf("%w: the attestation is for YubiKey %d, this card says %d", ErrAttestation, a.Serial, serial)
		}
		return &Attestation{
			Kind: "yubikey", Serial: a.Serial,
			Firmware:          fmt.Sprintf("%d.%d.%d", a.Version.Major, a.Version.Minor, a.Version.Patch),
			Slot:              fmt.Sprintf("%x", slot.Key),
			PINPolicy:         pinPolicyName(a.PINPolicy),
			TouchPolicy:       touchPolicyName(a.TouchPolicy),
			FormFactor:        a.Formfactor.String(),
			SlotCertificate:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: slotCert.Raw})),
			DeviceCertificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: device.Raw})),
		}, nil
	}
}

// VerifyRecorded verifies an attestation recorded earlier (a transcript's,
// or a published ceremony/attestations.json) without the card: its device
// certificate against roots (nil: Yubico's), its slot certificate against
// the device certificate, the serial it names, and that it attests pub.
func VerifyRecorded(a *Attestation, pub crypto.PublicKey, roots *x509.CertPool) error {
	device, err := parsePEMCert(a.DeviceCertificate)
	if err != nil {
		return fmt.Errorf("%w: the device certificate: %v", ErrAttestation, err)
	}
	slotCert, err := parsePEMCert(a.SlotCertificate)
	if err != nil {
		return fmt.Errorf("%w: the slot certificate: %v", ErrAttestation, err)
	}
	v := piv.Verifier{Roots: roots}
	got, err := v.Verify(device, slotCert)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAttestation, err)
	}
	if !sameKey(slotCert.PublicKey, pub) {
		return fmt.Errorf("%w: the attestation is about another key", ErrAttestation)
	}
	if got.Serial != a.Serial {
		return fmt.Errorf("%w: the certificate is for YubiKey %d, the record says %d", ErrAttestation, got.Serial, a.Serial)
	}
	return nil
}

func parsePEMCert(s string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("not a PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func pinPolicies() map[string]piv.PINPolicy {
	return map[string]piv.PINPolicy{"never": piv.PINPolicyNever, "once": piv.PINPolicyOnce, "always": piv.PINPolicyAlways}
}

func touchPolicies() map[string]piv.TouchPolicy {
	return map[string]piv.TouchPolicy{"never": piv.TouchPolicyNever, "always": piv.TouchPolicyAlways, "cached": piv.TouchPolicyCached}
}

func pinPolicyName(p piv.PINPolicy) string {
	for n, v := range pinPolicies() {
		if v == p {
			return n
		}
	}
	return "unknown"
}

func touchPolicyName(p piv.TouchPolicy) string {
	for n, v := range touchPolicies() {
		if v == p {
			return n
		}
	}
	return "unknown"
}

func generateYubiKey(ctx context.Context, u URI, o *options) (*Key, error) {
	slot, err := slotByName(u.Attrs["slot"])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	pp, tp := o.pinPolicy, o.touchPolicy
	if pp == "" {
		pp = "once"
	}
	if tp == "" {
		tp = "always"
	}
	pinPolicy, ok := pinPolicies()[pp]
	if !ok {
		return nil, fmt.Errorf("PIN policy %q: use never, once or always", pp)
	}
	touchPolicy, ok := touchPolicies()[tp]
	if !ok {
		return nil, fmt.Errorf("touch policy %q: use never, always or cached", tp)
	}
	yk, serial, err := openCard(u)
	if err != nil {
		return nil, err
	}
	defer yk.Close()
	if _, err := slotPublicKey(yk, slot); err == nil && !o.force {
		return nil, fmt.Errorf("YubiKey %d slot %s: %w (replacing it loses the old key)", serial, slot, ErrKeyExists)
	}
	if o.secret == nil {
		return nil, fmt.Errorf("%w: the PIN is needed to generate a key", ErrNoSecret)
	}
	canonical := URI{Scheme: SchemeYubiKey, Attrs: map[string]string{"serial": strconv.FormatUint(uint64(serial), 10), "slot": fmt.Sprintf("%x", slot.Key)}}
	pin, err := o.secret(ctx, SecretRequest{Kind: PIN, Key: canonical})
	if err != nil {
		return nil, err
	}
	if err := yk.VerifyPIN(string(pin)); err != nil {
		return nil, fmt.Errorf("YubiKey %d: %w", serial, pivError(err))
	}
	mgmt := piv.DefaultManagementKey
	// A management key protected by the PIN (ykman's --protect) is kept in
	// the PIN-protected metadata; otherwise the default applies.
	if md, err := yk.Metadata(string(pin)); err == nil && md.ManagementKey != nil {
		mgmt = *md.ManagementKey
	}
	pub, err := yk.GenerateKey(mgmt, slot, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: pinPolicy, TouchPolicy: touchPolicy})
	if err != nil {
		return nil, fmt.Errorf("generating on YubiKey %d slot %s (is the management key the default, or PIN-protected?): %w", serial, slot, err)
	}
	// Store the key's attestation as the slot's certificate, so tools that
	// list slots by their certificates (yubico-piv-tool -a status) show it;
	// signing a self-signed certificate would need a touch.
	if cert, err := yk.Attest(slot); err == nil {
		if err := yk.SetCertificate(mgmt, slot, cert); err != nil {
			return nil, fmt.Errorf("storing the slot certificate: %w", err)
		}
	}
	return &Key{URI: canonical, Public: pub, Close: func() error { return nil }}, nil
}

func listYubiKeys(context.Context, *options) ([]Device, error) {
	cards, err := piv.Cards()
	if err != nil {
		// No reader or no pcscd: there are no YubiKeys to list.
		return nil, nil
	}
	var out []Device
	for _, c := range cards {
		yk, err := piv.Open(c)
		if err != nil {
			continue
		}
		serial, err := yk.Serial()
		if err != nil {
			yk.Close()
			continue
		}
		v := yk.Version()
		d := Device{Kind: "yubikey", Name: c, Serial: strconv.FormatUint(uint64(serial), 10),
			Firmware: fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch), Slots: []string{},
			URI: "yubikey:serial=" + strconv.FormatUint(uint64(serial), 10)}
		for _, s := range []piv.Slot{piv.SlotAuthentication, piv.SlotSignature, piv.SlotKeyManagement, piv.SlotCardAuthentication} {
			if _, err := slotPublicKey(yk, s); err == nil {
				d.Slots = append(d.Slots, fmt.Sprintf("%x", s.Key))
			}
		}
		sort.Strings(d.Slots)
		yk.Close()
		out = append(out, d)
	}
	return out, nil
}

func sameKey(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}
