package pivsim

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/coldharbor/coldharbor/internal/atomicfile"
)

// stateFormat is the version of the state file's layout; bump it when a
// field changes meaning.
const stateFormat = 1

// PIN and PUK rules of a YubiKey 5 (Yubico, "PIV PIN and PUK"): 6 to 8
// bytes, padded to 8 with 0xFF (SP 800-73-4 Part 2 §2.4.3), 3 tries each
// from the factory; the retry counters are one byte (SET PIN RETRIES).
const (
	pinPad          = 0xff
	pinBlock        = 8
	minPINLen       = 6
	defaultRetries  = 3
	maxRetryCounter = 255
	defaultPIN      = "123456"
	defaultPUK      = "12345678"
)

// defaultMgmtKey is the factory management key (Yubico, "PIV Management
// Key"; piv-go's DefaultManagementKey).
var defaultMgmtKey = []byte{
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
}

// state is everything a YubiKey keeps across power cycles, as stored in the
// state file. Private keys are in it in the clear: this is a simulator.
type state struct {
	Format int    `json:"format"`
	Serial uint32 `json:"serial"`

	PIN            []byte `json:"pin"` // padded to 8 bytes, as the card compares it
	PUK            []byte `json:"puk"`
	PINRetries     int    `json:"pin_retries"`
	PINRetriesLeft int    `json:"pin_retries_left"`
	PUKRetries     int    `json:"puk_retries"`
	PUKRetriesLeft int    `json:"puk_retries_left"`

	MgmtAlg   byte   `json:"mgmt_alg"`
	MgmtKey   []byte `json:"mgmt_key"`
	MgmtTouch byte   `json:"mgmt_touch"`

	// Keys by slot, "9c"; f9 is the attestation key.
	Keys map[string]*slotKey `json:"keys"`
	// Objects by tag, "5fc10a": the content of the 53 template that PUT
	// DATA stored. 5fff01 holds the attestation certificate.
	Objects map[string][]byte `json:"objects"`

	// CACert is the attestation root (DER), which tests trust explicitly.
	// Its private key signed the f9 certificate when the card was made and
	// is not kept: nothing else needs it, as at Yubico's factory.
	CACert []byte `json:"ca_cert"`
}

// slotKey is an asymmetric key in a slot with its policies as resolved at
// generation (defaults already applied, as the card does).
type slotKey struct {
	Alg         byte   `json:"alg"`
	PINPolicy   byte   `json:"pin_policy"`
	TouchPolicy byte   `json:"touch_policy"`
	Origin      byte   `json:"origin"`
	Private     []byte `json:"private"` // PKCS #8
}

func (k *slotKey) signer() (crypto.Signer, error) {
	p, err := x509.ParsePKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("parsing slot key: %w", err)
	}
	switch p := p.(type) {
	case *ecdsa.PrivateKey:
		return p, nil
	case ed25519.PrivateKey:
		return p, nil
	}
	return nil, fmt.Errorf("slot key of type %T", p)
}

func padPIN(pin string) []byte {
	b := bytes.Repeat([]byte{pinPad}, pinBlock)
	copy(b, pin)
	return b
}

// resetCredentials puts PIN, PUK, retry counters and the management key
// back to the factory values (RESET; SET PIN RETRIES resets PIN and PUK).
func (s *state) resetCredentials(pinRetries, pukRetries int) {
	s.PIN, s.PUK = padPIN(defaultPIN), padPIN(defaultPUK)
	s.PINRetries, s.PINRetriesLeft = pinRetries, pinRetries
	s.PUKRetries, s.PUKRetriesLeft = pukRetries, pukRetries
}

func (s *state) resetMgmtKey() {
	s.MgmtAlg, s.MgmtKey, s.MgmtTouch = alg3DES, append([]byte(nil), defaultMgmtKey...), touchNever
}

func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading card state %s: %w", path, err)
	}
	if s.Format != stateFormat {
		return nil, fmt.Errorf("reading card state %s: format %d, this simulator reads %d", path, s.Format, stateFormat)
	}
	if len(s.PIN) != pinBlock || len(s.PUK) != pinBlock || len(s.CACert) == 0 {
		return nil, fmt.Errorf("reading card state %s: %w", path, errors.New("incomplete state"))
	}
	if s.Keys == nil {
		s.Keys = map[string]*slotKey{}
	}
	if s.Objects == nil {
		s.Objects = map[string][]byte{}
	}
	return &s, nil
}

// save writes the state atomically (temporary file, fsync, rename), so a
// simulator killed mid-write leaves the old card or the new, never half.
func (s *state) save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding card state: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving card state: %w", err)
	}
	return nil
}
