package pivsim

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"time"
)

// Card is a simulated YubiKey 5 whose persistent state lives in one file.
// Serve connects it to pcscd's vpcd driver. A Card is safe for concurrent
// use, but one state file must back at most one Card at a time.
type Card struct {
	path   string
	log    *slog.Logger
	rand   io.Reader
	notify func(addr string, plugged bool)
	ca     *x509.Certificate
	reader string // the PC/SC reader name, when Plug plugged the card

	mu   sync.Mutex // guards st and sess: one command at a time, as on a card
	st   *state
	sess session

	serveMu   sync.Mutex // guards the fields below
	closed    bool
	stopServe func()        // cancels the running Serve
	served    chan struct{} // closed when the running Serve returns
}

// Option configures Open.
type Option func(*options) error

type options struct {
	serial    uint32
	hasSerial bool
	log       *slog.Logger
	caCert    *x509.Certificate
	caKey     crypto.Signer
	notify    func(addr string, plugged bool)
}

// WithSerial gives a new card this serial number. Default: a random
// 8-digit serial. Opening an existing state file with a different serial
// is an error.
func WithSerial(serial uint32) Option {
	return func(o *options) error {
		if serial == 0 {
			return errors.New("serial 0 is not a YubiKey serial")
		}
		o.serial, o.hasSerial = serial, true
		return nil
	}
}

// WithLogger sends the card's log (plugging, touches simulated, wrong PINs,
// and at debug level every command without its data) to l. Default: no
// logging, as library code should.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil logger")
		}
		o.log = l
		return nil
	}
}

// WithAttestationCA makes a new card's attestation certificate (slot f9)
// chain to cert, signed with key, so several simulated cards share one
// root. Default: each new card makes its own CA. The key is used once, when
// the card is made, and not stored. Opening an existing state file whose
// CA differs is an error.
func WithAttestationCA(cert *x509.Certificate, key crypto.Signer) Option {
	return func(o *options) error {
		if cert == nil || key == nil {
			return errors.New("attestation CA needs a certificate and its key")
		}
		if !cert.IsCA {
			return errors.New("attestation CA certificate is not a CA")
		}
		o.caCert, o.caKey = cert, key
		return nil
	}
}

// WithNotify calls f each time the card is plugged into (connected to) or
// unplugged from vpcd at addr. Default: nothing is called.
func WithNotify(f func(addr string, plugged bool)) Option {
	return func(o *options) error {
		o.notify = f
		return nil
	}
}

// Open loads the card kept in statePath, or makes a factory-fresh one
// there when the file does not exist: default PIN 123456, PUK 12345678,
// the default 3DES management key, empty slots, an attestation key in f9
// certified by the card's own CA.
func Open(statePath string, opts ...Option) (*Card, error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("pivsim: %w", err)
		}
	}
	c := &Card{path: statePath, log: o.log, rand: rand.Reader, notify: o.notify}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.notify == nil {
		c.notify = func(string, bool) {}
	}

	st, err := loadState(statePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st, err = newState(c.rand, o)
		if err != nil {
			return nil, fmt.Errorf("pivsim: making a new card: %w", err)
		}
		if err := st.save(statePath); err != nil {
			return nil, fmt.Errorf("pivsim: %w", err)
		}
		c.log.Info("pivsim: new card", "serial", st.Serial, "state", statePath)
	case err != nil:
		return nil, fmt.Errorf("pivsim: %w", err)
	default:
		if o.hasSerial && o.serial != st.Serial {
			return nil, fmt.Errorf("pivsim: %s holds card %d, not %d", statePath, st.Serial, o.serial)
		}
		if o.caCert != nil && string(o.caCert.Raw) != string(st.CACert) {
			return nil, fmt.Errorf("pivsim: %s was made with another attestation CA", statePath)
		}
	}
	c.st = st
	c.ca, err = x509.ParseCertificate(st.CACert)
	if err != nil {
		return nil, fmt.Errorf("pivsim: attestation CA in %s: %w", statePath, err)
	}
	return c, nil
}

func newState(r io.Reader, o options) (*state, error) {
	serial := o.serial
	if !o.hasSerial {
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("serial: %w", err)
		}
		// 8 digits, as recent YubiKeys have.
		serial = 10_000_000 + binary.BigEndian.Uint32(b[:])%80_000_000
	}
	now := time.Now()
	ca, caKey := o.caCert, o.caKey
	if ca == nil {
		var err error
		if ca, caKey, err = newCA(r, serial, now); err != nil {
			return nil, err
		}
	}
	f9, f9Cert, err := newAttestationKey(r, serial, ca, caKey, now)
	if err != nil {
		return nil, err
	}
	st := &state{
		Format:  stateFormat,
		Serial:  serial,
		Keys:    map[string]*slotKey{slotName(slotAttest): f9},
		Objects: map[string][]byte{objectName(objAttestCert): certObject(f9Cert)},
		CACert:  ca.Raw,
	}
	st.resetCredentials(defaultRetries, defaultRetries)
	st.resetMgmtKey()
	return st, nil
}

// Serial is the card's serial number, as GET SERIAL reports it.
func (c *Card) Serial() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Serial
}

// AttestationCA is the root the card's attestations chain to. Trust it
// explicitly (piv.Verifier{Roots: …}); piv.Verify, which trusts Yubico's
// roots only, refuses the simulator's attestations.
func (c *Card) AttestationCA() *x509.Certificate { return c.ca }

// handle answers one vpcd message: a one-byte control (vsmartcard vpcd.h:
// 00 power off, 01 power on, 02 reset, 04 get ATR) or a command APDU. Only
// get ATR and APDUs are answered; every control but get ATR ends the
// session, as losing power or a reset does on a card.
func (c *Card) handle(msg []byte) (reply []byte, answer bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(msg) == 1 {
		switch msg[0] {
		case vpcdPowerOff, vpcdPowerOn, vpcdReset:
			c.clearSession()
			return nil, false
		case vpcdGetATR:
			return atr, true
		}
		c.log.Warn("pivsim: unknown vpcd control message", "byte", fmt.Sprintf("%02x", msg[0]))
		return nil, false
	}
	return c.sess.frame.exchange(msg, func(cmd command) response {
		r := c.process(cmd)
		c.logCommand(cmd, r)
		return r
	}), true
}
