package pivsim

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"fmt"
	"io"
)

// Dynamic authentication template and its items (SP 800-73-4 Part 2
// §3.2.4, Table 7).
const (
	tagDynAuth   = 0x7c
	tagWitness   = 0x80
	tagChallenge = 0x81
	tagResponse  = 0x82
	tagExponent  = 0x85 // the peer's public point, for ECDH
)

// mgmtChallenge is the card's half of a management-key authentication in
// progress (SP 800-73-4 Part 2 Appendix A.1–A.2: the witness flow piv-go
// and yubico-piv-tool use, and the one-way challenge).
type mgmtChallenge struct {
	witness bool   // false: a plain challenge the host must encrypt
	value   []byte // the clear witness or challenge
}

// mgmtKeyLen is the key length of each management-key algorithm (SP
// 800-78-4 Table 6-1; AES on YubiKey firmware 5.4+).
func mgmtKeyLen(alg byte) int {
	switch alg {
	case alg3DES, algAES192:
		return 24
	case algAES128:
		return 16
	case algAES256:
		return 32
	}
	return 0
}

func (c *Card) mgmtCipher() (cipher.Block, error) {
	if c.st.MgmtAlg == alg3DES {
		b, err := des.NewTripleDESCipher(c.st.MgmtKey)
		if err != nil {
			return nil, fmt.Errorf("management key: %w", err)
		}
		return b, nil
	}
	b, err := aes.NewCipher(c.st.MgmtKey)
	if err != nil {
		return nil, fmt.Errorf("management key: %w", err)
	}
	return b, nil
}

// verify implements VERIFY (SP 800-73-4 Part 2 §3.2.1) for the PIV PIN.
// Without data it reports the PIN's status: 9000 when verified, 63Cx
// otherwise; P1=FF forgets the verification.
func (c *Card) verify(cmd command) response {
	if cmd.p2 != refPIN {
		return status(swRefDataNotFound)
	}
	switch cmd.p1 {
	case 0xff:
		if len(cmd.data) != 0 {
			return status(swIncorrectData)
		}
		c.sess.pinVerified = false
		return status(swOK)
	case 0x00:
	default:
		return status(swIncorrectP1P2)
	}
	if len(cmd.data) == 0 {
		switch {
		case c.sess.pinVerified:
			return status(swOK)
		case c.st.PINRetriesLeft == 0:
			return status(swAuthBlocked)
		}
		return verifyFailed(c.st.PINRetriesLeft)
	}
	if len(cmd.data) != pinBlock {
		return status(swIncorrectData)
	}
	c.sess.pinVerified = false
	good, r := c.tryReference(refPIN, cmd.data)
	if good {
		c.sess.pinVerified, c.sess.pinJustVerified = true, true
	}
	return r
}

// tryReference checks a PIN or PUK, keeping its retry counter: a wrong
// value costs a try (63Cx with the tries left), none left is 6983, a right
// one restores all tries. The counter is saved before the answer, as a
// card writes it before answering, so pulling the plug cannot undo a try.
func (c *Card) tryReference(ref byte, given []byte) (bool, response) {
	secret, left, total := &c.st.PIN, &c.st.PINRetriesLeft, c.st.PINRetries
	if ref == refPUK {
		secret, left, total = &c.st.PUK, &c.st.PUKRetriesLeft, c.st.PUKRetries
	}
	if *left == 0 {
		return false, status(swAuthBlocked)
	}
	if subtle.ConstantTimeCompare(given, *secret) == 1 {
		if *left == total {
			return true, status(swOK)
		}
		*left = total
		r := c.commit(status(swOK))
		return r.sw == swOK, r
	}
	*left--
	c.log.Info("pivsim: wrong "+refName(ref), "serial", c.st.Serial, "retries_left", *left)
	return false, c.commit(verifyFailed(*left))
}

func refName(ref byte) string {
	if ref == refPUK {
		return "PUK"
	}
	return "PIN"
}

// validPIN checks a new PIN or PUK as a YubiKey does: 8 bytes, 6 to 8
// characters, then 0xFF padding only.
func validPIN(b []byte) bool {
	if len(b) != pinBlock {
		return false
	}
	n := 0
	for n < len(b) && b[n] != pinPad {
		n++
	}
	for _, x := range b[n:] {
		if x != pinPad {
			return false
		}
	}
	return n >= minPINLen
}

// changeReference implements CHANGE REFERENCE DATA (SP 800-73-4 Part 2
// §3.2.2) for the PIN (80) and, as YubiKeys allow, the PUK (81).
func (c *Card) changeReference(cmd command) response {
	if cmd.p1 != 0 || (cmd.p2 != refPIN && cmd.p2 != refPUK) {
		return status(swIncorrectP1P2)
	}
	if len(cmd.data) != 2*pinBlock {
		return status(swIncorrectData)
	}
	old, next := cmd.data[:pinBlock], cmd.data[pinBlock:]
	if cmd.p2 == refPIN {
		c.sess.pinVerified = false
	}
	// The old value is checked first, so a malformed new one still costs a
	// try: piv-go's Reset blocks the PUK with random 1- to 8-digit values.
	good, r := c.tryReference(cmd.p2, old)
	if !good {
		return r
	}
	if !validPIN(next) {
		return status(swIncorrectData)
	}
	if cmd.p2 == refPIN {
		c.st.PIN = append([]byte(nil), next...)
	} else {
		c.st.PUK = append([]byte(nil), next...)
	}
	return c.commit(status(swOK))
}

// resetRetryCounter implements RESET RETRY COUNTER (SP 800-73-4 Part 2
// §3.2.3): the PUK sets a new PIN and restores its tries.
func (c *Card) resetRetryCounter(cmd command) response {
	if cmd.p1 != 0 || cmd.p2 != refPIN {
		return status(swIncorrectP1P2)
	}
	if len(cmd.data) != 2*pinBlock {
		return status(swIncorrectData)
	}
	puk, next := cmd.data[:pinBlock], cmd.data[pinBlock:]
	c.sess.pinVerified = false
	good, r := c.tryReference(refPUK, puk)
	if !good {
		return r
	}
	if !validPIN(next) {
		return status(swIncorrectData)
	}
	c.st.PIN = append([]byte(nil), next...)
	c.st.PINRetriesLeft = c.st.PINRetries
	return c.commit(status(swOK))
}

// mgmtAuthenticate is GENERAL AUTHENTICATE with key reference 9B: proving
// the management key, in either flow of SP 800-73-4 Part 2 Appendix A.
func (c *Card) mgmtAuthenticate(cmd command, items []tlvItem) response {
	if cmd.p1 != c.st.MgmtAlg {
		return status(swIncorrectP1P2)
	}
	block, err := c.mgmtCipher()
	if err != nil {
		c.log.Error("pivsim: unusable management key", "serial", c.st.Serial, "err", err)
		return status(swMemoryFailure)
	}
	bs := block.BlockSize()
	witness, hasW := findTLV(items, tagWitness)
	challenge, hasC := findTLV(items, tagChallenge)
	answer, hasR := findTLV(items, tagResponse)
	pending := c.sess.auth
	c.sess.auth = nil
	c.sess.mgmtAuthed = false

	switch {
	case hasW && len(witness) == 0 && !hasC && !hasR:
		// Mutual, step 1: the card sends a witness encrypted under the key.
		w, err := c.random(bs)
		if err != nil {
			return status(swMemoryFailure)
		}
		c.sess.auth = &mgmtChallenge{witness: true, value: w}
		enc := make([]byte, bs)
		block.Encrypt(enc, w)
		return success(tlv(tagDynAuth, tlv(tagWitness, enc)))

	case hasW && hasC && !hasR:
		// Mutual, step 2: the host shows the decrypted witness and
		// challenges the card in turn.
		if pending == nil || !pending.witness || len(challenge) != bs ||
			subtle.ConstantTimeCompare(witness, pending.value) != 1 {
			return status(swSecurityNotSatisfied)
		}
		c.touch(slotMgmt, c.st.MgmtTouch)
		c.sess.mgmtAuthed = true
		enc := make([]byte, bs)
		block.Encrypt(enc, challenge)
		return success(tlv(tagDynAuth, tlv(tagResponse, enc)))

	case hasC && len(challenge) == 0 && !hasW && !hasR:
		// One-way, step 1: a clear challenge for the host to encrypt.
		ch, err := c.random(bs)
		if err != nil {
			return status(swMemoryFailure)
		}
		c.sess.auth = &mgmtChallenge{value: ch}
		return success(tlv(tagDynAuth, tlv(tagChallenge, ch)))

	case hasR && !hasW && !hasC:
		if pending == nil || pending.witness || len(answer) != bs {
			return status(swSecurityNotSatisfied)
		}
		want := make([]byte, bs)
		block.Encrypt(want, pending.value)
		if subtle.ConstantTimeCompare(answer, want) != 1 {
			return status(swSecurityNotSatisfied)
		}
		c.touch(slotMgmt, c.st.MgmtTouch)
		c.sess.mgmtAuthed = true
		return status(swOK)
	}
	return status(swIncorrectData)
}

func (c *Card) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(c.rand, b); err != nil {
		c.log.Error("pivsim: no randomness", "err", err)
		return nil, fmt.Errorf("reading random bytes: %w", err)
	}
	return b, nil
}

// setManagementKey implements Yubico's SET MANAGEMENT KEY (INS FF, P2 FF,
// or FE to require touch): algorithm, key reference 9B, key.
func (c *Card) setManagementKey(cmd command) response {
	if cmd.p1 != 0xff || (cmd.p2 != 0xff && cmd.p2 != 0xfe) {
		return status(swIncorrectP1P2)
	}
	if !c.sess.mgmtAuthed {
		return status(swSecurityNotSatisfied)
	}
	d := cmd.data
	if len(d) < 3 || d[1] != slotMgmt || int(d[2]) != len(d)-3 {
		return status(swIncorrectData)
	}
	alg, key := d[0], d[3:]
	if n := mgmtKeyLen(alg); n == 0 || n != len(key) {
		return status(swIncorrectData)
	}
	c.st.MgmtAlg, c.st.MgmtKey = alg, append([]byte(nil), key...)
	c.st.MgmtTouch = touchNever
	if cmd.p2 == 0xfe {
		c.st.MgmtTouch = touchAlways
	}
	return c.commit(status(swOK))
}

// setRetries implements Yubico's SET PIN RETRIES (INS FA, P1 PIN tries,
// P2 PUK tries). It needs both the management key and the PIN, and puts
// PIN and PUK back to their defaults.
func (c *Card) setRetries(cmd command) response {
	if cmd.p1 == 0 || cmd.p2 == 0 {
		return status(swIncorrectP1P2)
	}
	if !c.sess.mgmtAuthed || !c.sess.pinVerified {
		return status(swSecurityNotSatisfied)
	}
	c.st.resetCredentials(int(cmd.p1), int(cmd.p2))
	c.sess.pinVerified = false
	return c.commit(status(swOK))
}

// reset implements Yubico's RESET (INS FB): only a card whose PIN and PUK
// are both blocked may be reset. Keys, objects, PIN, PUK and management key
// return to the factory; the attestation key and certificate (f9, 5FFF01)
// are the factory's and stay.
func (c *Card) reset(cmd command) response {
	if c.st.PINRetriesLeft > 0 || c.st.PUKRetriesLeft > 0 {
		return status(swConditionsNotSatisfed)
	}
	f9 := c.st.Keys[slotName(slotAttest)]
	f9Cert := c.st.Objects[objectName(objAttestCert)]
	c.st.Keys = map[string]*slotKey{slotName(slotAttest): f9}
	c.st.Objects = map[string][]byte{objectName(objAttestCert): f9Cert}
	c.st.resetCredentials(defaultRetries, defaultRetries)
	c.st.resetMgmtKey()
	c.clearAuth()
	c.log.Info("pivsim: PIV applet reset", "serial", c.st.Serial)
	return c.commit(status(swOK))
}
