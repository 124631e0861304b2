package pivsim

import (
	"bytes"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// These tests drive the card through its vpcd message handler, without
// pcscd: APDU-level behaviour piv-go does not reach.

func newCard(t *testing.T, opts ...Option) (*Card, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "card.json")
	c, err := Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, path
}

// send transmits one APDU as vpcd would and follows 61xx like piv-go.
func send(t *testing.T, c *Card, apdu []byte) (data []byte, sw uint16) {
	t.Helper()
	for {
		r, answered := c.handle(apdu)
		if !answered || len(r) < 2 {
			t.Fatalf("no answer to % x", apdu)
		}
		data = append(data, r[:len(r)-2]...)
		sw = uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1])
		if sw>>8 != 0x61 {
			return data, sw
		}
		apdu = []byte{0x00, insGetResponse, 0, 0, 0}
	}
}

func apdu(ins, p1, p2 byte, data []byte) []byte {
	return append([]byte{0x00, ins, p1, p2, byte(len(data))}, data...)
}

func mustSW(t *testing.T, c *Card, cmd []byte, want uint16) []byte {
	t.Helper()
	data, sw := send(t, c, cmd)
	if sw != want {
		t.Fatalf("% x: SW %04x, want %04x", cmd[:4], sw, want)
	}
	return data
}

func selectPIV(t *testing.T, c *Card) {
	t.Helper()
	mustSW(t, c, apdu(insSelect, 0x04, 0x00, aidPIV[:5]), swOK)
}

// authDefault3DES runs the mutual witness flow piv-go and yubico-piv-tool
// use, with the factory 3DES key.
func authDefault3DES(t *testing.T, c *Card) {
	t.Helper()
	block, err := des.NewTripleDESCipher(defaultMgmtKey)
	if err != nil {
		t.Fatal(err)
	}
	resp := mustSW(t, c, apdu(insGeneralAuth, alg3DES, slotMgmt, unhex(t, "7c028000")), swOK)
	witness := make([]byte, 8)
	block.Decrypt(witness, resp[4:12])
	challenge := unhex(t, "0102030405060708")
	msg := tlv(tagDynAuth, append(tlv(tagWitness, witness), tlv(tagChallenge, challenge)...))
	resp = mustSW(t, c, apdu(insGeneralAuth, alg3DES, slotMgmt, msg), swOK)
	want := make([]byte, 8)
	block.Encrypt(want, challenge)
	if !bytes.Equal(resp[4:], want) {
		t.Fatalf("card's response to our challenge: %x, want %x", resp[4:], want)
	}
}

func verifyPIN(pin string) []byte { return apdu(insVerify, 0, refPIN, padPIN(pin)) }

func TestUnknownAndMissing(t *testing.T) {
	c, _ := newCard(t)
	mustSW(t, c, apdu(insGetVersion, 0, 0, nil), swINSNotSupported) // nothing selected yet
	mustSW(t, c, apdu(insSelect, 0x04, 0, unhex(t, "a000000527")), swNotFound)
	selectPIV(t, c)
	mustSW(t, c, apdu(0x12, 0, 0, nil), swINSNotSupported)
	mustSW(t, c, apdu(insGetData, 0x3f, 0xff, unhex(t, "5c035fc10a")), swNotFound)
	mustSW(t, c, apdu(insGetMetadata, 0, slotSign, nil), swNotFound)
	if v := mustSW(t, c, apdu(insGetVersion, 0, 0, nil), swOK); !bytes.Equal(v, []byte{5, 7, 4}) {
		t.Errorf("version % x", v)
	}
	if d := mustSW(t, c, apdu(insGetData, 0x3f, 0xff, unhex(t, "5c017e")), swOK); d[0] != tagDiscovery {
		t.Errorf("discovery object % x", d)
	}
}

// TestMetadataIsComplete: piv-go indexes resp[2] of the 9B metadata and
// panics on less; every reference answers in full.
func TestMetadataIsComplete(t *testing.T) {
	c, _ := newCard(t)
	selectPIV(t, c)
	for _, tc := range []struct {
		ref  byte
		want string
	}{
		{refPIN, "01 01 ff 05 01 01 06 02 03 03"},
		{refPUK, "01 01 ff 05 01 01 06 02 03 03"},
		{slotMgmt, "01 01 03 02 02 01 01 05 01 01"},
	} {
		if got := mustSW(t, c, apdu(insGetMetadata, 0, tc.ref, nil), swOK); !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("metadata %02x: % x, want %s", tc.ref, got, tc.want)
		}
	}
	md := mustSW(t, c, apdu(insGetMetadata, 0, slotAttest, nil), swOK)
	if !bytes.HasPrefix(md, unhex(t, "01 01 11 02 02 01 01 03 01 02 04 43 86 41 04")) {
		t.Errorf("f9 metadata % x", md)
	}
	mustSW(t, c, verifyPIN("000000"), swVerifyFail|2)
	if got := mustSW(t, c, apdu(insGetMetadata, 0, refPIN, nil), swOK); !bytes.HasSuffix(got, unhex(t, "06 02 03 02")) {
		t.Errorf("PIN metadata after a wrong PIN: % x", got)
	}
}

func TestPINPolicyAlwaysNeedsVerifyRightBefore(t *testing.T) {
	c, _ := newCard(t)
	selectPIV(t, c)
	authDefault3DES(t, c)
	gen := tlv(tagGenTemplate, unhex(t, "800111 aa0103 ab0101"))
	pubTLV := mustSW(t, c, apdu(insGenerate, 0, slotSign, gen), swOK)
	digest := sha256.Sum256([]byte("payload"))
	sign := apdu(insGeneralAuth, algECCP256, slotSign, tlv(tagDynAuth, append([]byte{0x82, 0x00}, tlv(tagChallenge, digest[:])...)))

	mustSW(t, c, sign, swSecurityNotSatisfied) // no PIN at all
	mustSW(t, c, verifyPIN(defaultPIN), swOK)
	mustSW(t, c, apdu(insGetVersion, 0, 0, nil), swOK)
	mustSW(t, c, sign, swSecurityNotSatisfied) // another command came between
	mustSW(t, c, verifyPIN(defaultPIN), swOK)
	resp := mustSW(t, c, sign, swOK)
	mustSW(t, c, sign, swSecurityNotSatisfied) // one signature per VERIFY

	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pubTLV[5:])
	if err != nil {
		t.Fatalf("public key % x: %v", pubTLV, err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], resp[4:]) {
		t.Error("signature does not verify")
	}
}

func TestPowerCycleAndResetForgetAuthentication(t *testing.T) {
	for _, ctl := range []byte{vpcdPowerOff, vpcdReset} {
		c, _ := newCard(t)
		selectPIV(t, c)
		mustSW(t, c, verifyPIN(defaultPIN), swOK)
		authDefault3DES(t, c)
		if _, answered := c.handle([]byte{ctl}); answered {
			t.Errorf("control %02x was answered", ctl)
		}
		if _, answered := c.handle([]byte{vpcdPowerOn}); answered {
			t.Error("power on was answered")
		}
		mustSW(t, c, apdu(insGetVersion, 0, 0, nil), swINSNotSupported) // no applet selected
		selectPIV(t, c)
		mustSW(t, c, apdu(insVerify, 0, refPIN, nil), swVerifyFail|3)
		mustSW(t, c, apdu(insPutData, 0x3f, 0xff, unhex(t, "5c035fc10a 5300")), swSecurityNotSatisfied)
	}
}

// TestATRAtAnyTime: pcscd asks for the ATR about every 400 ms, also in the
// middle of a chained command or a long answer.
func TestATRAtAnyTime(t *testing.T) {
	c, _ := newCard(t)
	if r, answered := c.handle([]byte{vpcdGetATR}); !answered || !bytes.Equal(r, atr) {
		t.Fatalf("ATR: % x", r)
	}
	selectPIV(t, c)
	authDefault3DES(t, c)
	mustSW(t, c, apdu(insGenerate, 0, slotSign, tlv(tagGenTemplate, unhex(t, "800111"))), swOK)
	r, _ := c.handle(apdu(insAttest, slotSign, 0, nil))
	if r[len(r)-2] != 0x61 {
		t.Fatalf("attestation fits one answer? % x", r[len(r)-2:])
	}
	if r, _ := c.handle([]byte{vpcdGetATR}); !bytes.Equal(r, atr) {
		t.Fatalf("ATR mid-answer: % x", r)
	}
	if r, _ := c.handle(unhex(t, "00c0000000")); len(r) < 3 {
		t.Fatalf("GET RESPONSE after ATR: % x", r)
	}
}

func TestResetOnlyWhenBlocked(t *testing.T) {
	c, _ := newCard(t)
	selectPIV(t, c)
	mustSW(t, c, apdu(insReset, 0, 0, nil), swConditionsNotSatisfed)
	for i := 2; i >= 0; i-- {
		mustSW(t, c, verifyPIN("000000"), swVerifyFail|uint16(i))
	}
	mustSW(t, c, verifyPIN(defaultPIN), swAuthBlocked)
	mustSW(t, c, apdu(insReset, 0, 0, nil), swConditionsNotSatisfed) // PUK still usable
	wrongPUK := append(padPIN("00000000"), padPIN("123456")...)
	mustSW(t, c, apdu(insResetRetry, 0, refPIN, wrongPUK), swVerifyFail|2)
	// As piv-go's Reset blocks the PUK: random values, maybe too short for
	// a new PUK; each still costs a try.
	shortPUK := append(padPIN("4711"), padPIN("4711")...)
	mustSW(t, c, apdu(insChangeRef, 0, refPUK, shortPUK), swVerifyFail|1)
	mustSW(t, c, apdu(insChangeRef, 0, refPUK, shortPUK), swVerifyFail|0)
	mustSW(t, c, apdu(insChangeRef, 0, refPUK, shortPUK), swAuthBlocked)
	mustSW(t, c, apdu(insReset, 0, 0, nil), swOK)
	mustSW(t, c, verifyPIN(defaultPIN), swOK)
	mustSW(t, c, apdu(insGetMetadata, 0, slotAttest, nil), swOK) // the factory's attestation key stays
}

func TestOneWayManagementKeyChallenge(t *testing.T) {
	c, _ := newCard(t)
	selectPIV(t, c)
	block, _ := des.NewTripleDESCipher(defaultMgmtKey)
	resp := mustSW(t, c, apdu(insGeneralAuth, alg3DES, slotMgmt, unhex(t, "7c028100")), swOK)
	enc := make([]byte, 8)
	block.Encrypt(enc, resp[4:12])
	mustSW(t, c, apdu(insGeneralAuth, alg3DES, slotMgmt, tlv(tagDynAuth, tlv(tagResponse, enc))), swOK)
	mustSW(t, c, apdu(insPutData, 0x3f, 0xff, unhex(t, "5c035fc102 5302aabb")), swOK)

	// A wrong answer fails and leaves the card unauthenticated.
	resp = mustSW(t, c, apdu(insGeneralAuth, alg3DES, slotMgmt, unhex(t, "7c028100")), swOK)
	mustSW(t, c, apdu(insGeneralAuth, alg3DES, slotMgmt, tlv(tagDynAuth, tlv(tagResponse, resp[4:12]))), swSecurityNotSatisfied)
	mustSW(t, c, apdu(insPutData, 0x3f, 0xff, unhex(t, "5c035fc102 5300")), swSecurityNotSatisfied)
	// The algorithm must be the key's.
	mustSW(t, c, apdu(insGeneralAuth, algAES192, slotMgmt, unhex(t, "7c028000")), swIncorrectP1P2)
}

func TestStateFilePersistsAndIsPrivate(t *testing.T) {
	c, path := newCard(t, WithSerial(12345678))
	selectPIV(t, c)
	mustSW(t, c, apdu(insChangeRef, 0, refPIN, append(padPIN(defaultPIN), padPIN("12345")...)), swIncorrectData) // too short
	mustSW(t, c, apdu(insChangeRef, 0, refPUK, append(padPIN(defaultPUK), padPIN("87654321")...)), swOK)
	mustSW(t, c, verifyPIN("000000"), swVerifyFail|2)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600: it holds private keys", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("left beside the state file: %v", ents)
	}

	again, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.Serial() != 12345678 {
		t.Errorf("serial %d after reopening", again.Serial())
	}
	if !again.AttestationCA().Equal(c.AttestationCA()) {
		t.Error("attestation CA changed on reopening")
	}
	selectPIV(t, again)
	mustSW(t, again, apdu(insVerify, 0, refPIN, nil), swVerifyFail|2)
	mustSW(t, again, apdu(insResetRetry, 0, refPIN, append(padPIN("87654321"), padPIN("654321")...)), swOK)

	if _, err := Open(path, WithSerial(1)); err == nil {
		t.Error("opened a state file with another serial")
	}
}

func TestSharedAttestationCA(t *testing.T) {
	ca, key, err := newCA(rand.Reader, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c, _ := newCard(t, WithAttestationCA(ca, key))
		if !c.AttestationCA().Equal(ca) {
			t.Fatal("card does not report the CA it was given")
		}
		items, _ := parseTLVs(c.st.Objects[objectName(objAttestCert)])
		der, _ := findTLV(items, tagCert)
		f9, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := f9.CheckSignatureFrom(ca); err != nil {
			t.Errorf("f9 certificate not signed by the shared CA: %v", err)
		}
	}
}
