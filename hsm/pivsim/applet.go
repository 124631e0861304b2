package pivsim

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
)

// Instructions. SP 800-73-4 Part 2 §3 defines the standard ones; the F-range
// are Yubico's extensions (developers.yubico.com/PIV/Introduction/
// Yubico_extensions.html; yubico-piv-tool lib/ykpiv.h).
const (
	insSelect        = 0xa4 // §3.1.1 SELECT
	insGetData       = 0xcb // §3.1.2 GET DATA
	insVerify        = 0x20 // §3.2.1 VERIFY
	insChangeRef     = 0x24 // §3.2.2 CHANGE REFERENCE DATA
	insResetRetry    = 0x2c // §3.2.3 RESET RETRY COUNTER
	insGeneralAuth   = 0x87 // §3.2.4 GENERAL AUTHENTICATE
	insPutData       = 0xdb // §3.3.1 PUT DATA
	insGenerate      = 0x47 // §3.3.2 GENERATE ASYMMETRIC KEY PAIR
	insSetMgmtKey    = 0xff // Yubico SET MANAGEMENT KEY
	insImportKey     = 0xfe // Yubico IMPORT ASYMMETRIC KEY
	insGetVersion    = 0xfd // Yubico GET VERSION
	insReset         = 0xfb // Yubico RESET
	insSetPINRetries = 0xfa // Yubico SET PIN RETRIES
	insAttest        = 0xf9 // Yubico ATTEST
	insGetSerial     = 0xf8 // Yubico GET SERIAL (firmware 5+)
	insGetMetadata   = 0xf7 // Yubico GET METADATA (firmware 5.3+)
)

// Key references (SP 800-73-4 Part 1 §5.1 Table 4b; retired slots 82–95,
// Yubico's f9 attestation slot) and the PIN/PUK references (Part 1 Table 4a).
const (
	refPIN        = 0x80
	refPUK        = 0x81
	slotPIVAuth   = 0x9a
	slotMgmt      = 0x9b
	slotSign      = 0x9c
	slotKeyMgmt   = 0x9d
	slotCardAuth  = 0x9e
	slotAttest    = 0xf9
	slotRetiredLo = 0x82
	slotRetiredHi = 0x95
)

// Algorithm identifiers (SP 800-78-4 Table 6-2; Ed25519 E0 and X25519 E1
// are Yubico's, firmware 5.7). algPIN is what GET METADATA reports for the
// PIN and PUK.
const (
	alg3DES    = 0x03
	algAES128  = 0x08
	algAES192  = 0x0a
	algAES256  = 0x0c
	algECCP256 = 0x11
	algECCP384 = 0x14
	algEd25519 = 0xe0
	algPIN     = 0xff
)

// PIN and touch policies (Yubico extensions, tags AA/AB of GENERATE and
// IMPORT; 00 means "the slot's default").
const (
	pinDefault  = 0x00
	pinNever    = 0x01
	pinOnce     = 0x02
	pinAlways   = 0x03
	touchNever  = 0x01
	touchAlways = 0x02
	touchCached = 0x03

	originGenerated = 0x01
	originImported  = 0x02
)

// formFactor is Yubico's form-factor byte (yubikey-manager
// Config_Reference: 01 USB-A keychain), in attestations and device info.
const formFactor = 0x01

// Identity of the simulated device: a YubiKey 5 NFC (USB-A keychain) on
// firmware 5.7.4. These tables are read, never written.
var (
	firmware = [3]byte{5, 7, 4}
	// atr is a YubiKey 5's answer-to-reset; it offers T=1, the only protocol
	// piv-go connects with.
	atr = []byte{0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0,
		0x21, 0xc0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40}
)

// Application identifiers. PIV: SP 800-73-4 Part 1 §2.2 (selectable by the
// RID-plus-PIX prefix A0 00 00 03 08); Yubico's management applet is what
// piv-go's FormFactor selects.
var (
	aidPIV        = []byte{0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00}
	aidPIVMin     = 5
	aidManagement = []byte{0xa0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17}
)

type applet int

const (
	appletNone applet = iota
	appletPIV
	appletManagement
)

// session is what a YubiKey forgets on power loss or reset: the selected
// applet, PIN and management-key authentication, and a half-done
// challenge-response.
type session struct {
	applet      applet
	pinVerified bool
	// pinJustVerified is set by a successful VERIFY and spent by the next
	// command: a PIN-policy "always" key signs only right after VERIFY.
	pinJustVerified bool
	mgmtAuthed      bool
	auth            *mgmtChallenge
	frame           framer
}

// process runs one complete command on the selected applet.
func (c *Card) process(cmd command) response {
	justVerified := c.sess.pinJustVerified
	c.sess.pinJustVerified = false

	if cmd.ins == insSelect {
		return c.selectApplet(cmd)
	}
	switch c.sess.applet {
	case appletManagement:
		return c.management(cmd)
	case appletPIV:
	default:
		return status(swINSNotSupported)
	}

	switch cmd.ins {
	case insGetVersion:
		return success(firmware[:])
	case insGetSerial:
		return success(binary.BigEndian.AppendUint32(nil, c.st.Serial))
	case insVerify:
		return c.verify(cmd)
	case insChangeRef:
		return c.changeReference(cmd)
	case insResetRetry:
		return c.resetRetryCounter(cmd)
	case insGeneralAuth:
		return c.generalAuthenticate(cmd, justVerified)
	case insSetMgmtKey:
		return c.setManagementKey(cmd)
	case insGenerate:
		return c.generate(cmd)
	case insImportKey:
		return c.importKey(cmd)
	case insGetData:
		return c.getData(cmd)
	case insPutData:
		return c.putData(cmd)
	case insAttest:
		return c.attest(cmd)
	case insGetMetadata:
		return c.metadata(cmd)
	case insSetPINRetries:
		return c.setRetries(cmd)
	case insReset:
		return c.reset(cmd)
	}
	return status(swINSNotSupported)
}

// selectApplet implements SELECT by AID (SP 800-73-4 Part 2 §3.1.1).
// Selecting forgets PIN and management-key authentication, as a YubiKey
// does: yubico-piv-tool re-verifies after every re-select for this reason.
func (c *Card) selectApplet(cmd command) response {
	if cmd.p1 != 0x04 {
		return status(swIncorrectP1P2)
	}
	c.clearAuth()
	switch {
	case len(cmd.data) >= aidPIVMin && bytes.HasPrefix(aidPIV, cmd.data):
		c.sess.applet = appletPIV
		// Application property template (Part 2 §3.1.1, Table 3): the PIX of
		// the application and the coexistent tag allocation authority.
		return success(tlv(0x61, append(tlv(0x4f, aidPIV[5:]), tlv(0x79, tlv(0x4f, aidPIV[:5]))...)))
	case bytes.Equal(cmd.data, aidManagement):
		c.sess.applet = appletManagement
		return success([]byte(managementVersionString()))
	}
	c.sess.applet = appletNone
	return status(swNotFound)
}

func (c *Card) clearAuth() {
	c.sess.pinVerified, c.sess.pinJustVerified, c.sess.mgmtAuthed, c.sess.auth = false, false, false, nil
}

// clearSession is a power cycle or a reset: everything volatile goes.
func (c *Card) clearSession() {
	c.sess = session{}
}

// commit saves the state after a change; a card that cannot persist
// reports a memory failure rather than pretend it succeeded.
func (c *Card) commit(r response) response {
	if err := c.st.save(c.path); err != nil {
		c.log.Error("pivsim: cannot save card state", "serial", c.st.Serial, "err", err)
		return status(swMemoryFailure)
	}
	return r
}

// touch simulates a touch for a key whose policy asks for one: nobody is
// there to press the button, so it is logged and granted.
func (c *Card) touch(slot byte, policy byte) {
	switch policy {
	case touchAlways, touchCached:
		name := "always"
		if policy == touchCached {
			name = "cached"
		}
		c.log.Info("pivsim: touch simulated", "serial", c.st.Serial, "slot", slotName(slot), "policy", name)
	}
}

func slotName(slot byte) string { return fmt.Sprintf("%02x", slot) }

// logCommand traces a command without its data: data may be a PIN.
func (c *Card) logCommand(cmd command, r response) {
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug("pivsim: apdu", "serial", c.st.Serial, "apdu", fmt.Sprintf("%02x %02x %02x %02x", cmd.cla, cmd.ins, cmd.p1, cmd.p2),
			"lc", len(cmd.data), "sw", fmt.Sprintf("%04x", r.sw), "le", len(r.data))
	}
}
