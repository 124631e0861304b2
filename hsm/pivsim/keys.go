package pivsim

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
)

// Tags of GENERATE ASYMMETRIC KEY PAIR (SP 800-73-4 Part 2 §3.3.2: the AC
// control template and 80 algorithm in, 7F49 with 86 the EC point out),
// plus Yubico's policy tags AA/AB.
const (
	tagGenTemplate = 0xac
	tagAlgorithm   = 0x80
	tagPINPolicy   = 0xaa
	tagTouchPolicy = 0xab
	tagPublicKey   = 0x7f49
	tagECPoint     = 0x86
	// Yubico IMPORT ASYMMETRIC KEY: EC private scalar, Ed25519 seed.
	tagImportEC      = 0x06
	tagImportEd25519 = 0x07
)

// Tags of GET METADATA's answer (docs.yubico.com/yesdk/users-manual/
// application-piv/apdu/metadata.html).
const (
	mdAlgorithm = 0x01
	mdPolicy    = 0x02
	mdOrigin    = 0x03
	mdPublicKey = 0x04
	mdDefault   = 0x05
	mdRetries   = 0x06
)

// keySlot reports whether slot can hold a key the user generates or
// imports (SP 800-73-4 Part 1 Table 4b; f9 is Yubico's and stays).
func keySlot(slot byte) bool {
	switch slot {
	case slotPIVAuth, slotSign, slotKeyMgmt, slotCardAuth:
		return true
	}
	return slot >= slotRetiredLo && slot <= slotRetiredHi
}

// defaultPINPolicy is the policy a slot gets when none is given (Yubico,
// "PIV certificate slots"): 9c signs only right after the PIN, 9e never
// asks for it.
func defaultPINPolicy(slot byte) byte {
	switch slot {
	case slotSign:
		return pinAlways
	case slotCardAuth:
		return pinNever
	}
	return pinOnce
}

func curveOf(alg byte) elliptic.Curve {
	switch alg {
	case algECCP256:
		return elliptic.P256()
	case algECCP384:
		return elliptic.P384()
	}
	return nil
}

// policies reads the AA/AB tags, applying the slot's defaults.
func policies(items []tlvItem, slot byte) (pin, touch byte, err error) {
	pin, touch = defaultPINPolicy(slot), touchNever
	if v, ok := findTLV(items, tagPINPolicy); ok {
		if len(v) != 1 || v[0] > pinAlways {
			return 0, 0, errors.New("unsupported PIN policy") // 04/05 are the Bio's
		}
		if v[0] != pinDefault {
			pin = v[0]
		}
	}
	if v, ok := findTLV(items, tagTouchPolicy); ok {
		if len(v) != 1 || v[0] > touchCached {
			return 0, 0, errors.New("unsupported touch policy")
		}
		if v[0] != 0 {
			touch = v[0]
		}
	}
	return pin, touch, nil
}

// generate implements GENERATE ASYMMETRIC KEY PAIR (SP 800-73-4 Part 2
// §3.3.2) with Yubico's policy tags. Supported: ECC P-256 and P-384, and
// Ed25519 as firmware 5.7 has it; RSA and X25519 answer 6A80.
func (c *Card) generate(cmd command) response {
	if cmd.p1 != 0 || !keySlot(cmd.p2) {
		return status(swIncorrectP1P2)
	}
	if !c.sess.mgmtAuthed {
		return status(swSecurityNotSatisfied)
	}
	outer, err := parseTLVs(cmd.data)
	if err != nil {
		return status(swIncorrectData)
	}
	tmpl, found := findTLV(outer, tagGenTemplate)
	if !found {
		return status(swIncorrectData)
	}
	items, err := parseTLVs(tmpl)
	if err != nil {
		return status(swIncorrectData)
	}
	algv, found := findTLV(items, tagAlgorithm)
	if !found || len(algv) != 1 {
		return status(swIncorrectData)
	}
	pin, touch, err := policies(items, cmd.p2)
	if err != nil {
		return status(swIncorrectData)
	}
	alg := algv[0]
	var pkcs8 []byte
	switch alg {
	case algECCP256, algECCP384:
		k, err := ecdsa.GenerateKey(curveOf(alg), c.rand)
		if err != nil {
			return status(swMemoryFailure)
		}
		pkcs8, err = x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return status(swMemoryFailure)
		}
	case algEd25519:
		_, k, err := ed25519.GenerateKey(c.rand)
		if err != nil {
			return status(swMemoryFailure)
		}
		pkcs8, err = x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return status(swMemoryFailure)
		}
	default:
		return status(swIncorrectData)
	}
	key := &slotKey{Alg: alg, PINPolicy: pin, TouchPolicy: touch, Origin: originGenerated, Private: pkcs8}
	pub, err := publicTLV(key)
	if err != nil {
		c.log.Error("pivsim: generated key unusable", "err", err)
		return status(swMemoryFailure)
	}
	c.st.Keys[slotName(cmd.p2)] = key
	c.log.Info("pivsim: key generated", "serial", c.st.Serial, "slot", slotName(cmd.p2),
		"alg", fmt.Sprintf("%02x", alg), "pin_policy", pin, "touch_policy", touch)
	return c.commit(success(tlv(tagPublicKey, pub)))
}

// importKey implements Yubico's IMPORT ASYMMETRIC KEY (INS FE, P1
// algorithm, P2 slot) for the algorithms generate supports.
func (c *Card) importKey(cmd command) response {
	if !keySlot(cmd.p2) {
		return status(swIncorrectP1P2)
	}
	if !c.sess.mgmtAuthed {
		return status(swSecurityNotSatisfied)
	}
	items, err := parseTLVs(cmd.data)
	if err != nil {
		return status(swIncorrectData)
	}
	pin, touch, err := policies(items, cmd.p2)
	if err != nil {
		return status(swIncorrectData)
	}
	var pkcs8 []byte
	switch cmd.p1 {
	case algECCP256, algECCP384:
		d, found := findTLV(items, tagImportEC)
		if !found {
			return status(swIncorrectData)
		}
		k, err := ecdsa.ParseRawPrivateKey(curveOf(cmd.p1), d)
		if err != nil {
			return status(swIncorrectData)
		}
		pkcs8, err = x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return status(swMemoryFailure)
		}
	case algEd25519:
		seed, found := findTLV(items, tagImportEd25519)
		if !found || len(seed) != ed25519.SeedSize {
			return status(swIncorrectData)
		}
		pkcs8, err = x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed))
		if err != nil {
			return status(swMemoryFailure)
		}
	default:
		return status(swIncorrectP1P2)
	}
	c.st.Keys[slotName(cmd.p2)] = &slotKey{Alg: cmd.p1, PINPolicy: pin, TouchPolicy: touch, Origin: originImported, Private: pkcs8}
	return c.commit(status(swOK))
}

// publicTLV encodes a slot's public key as the card does, inside 7F49 and
// in GET METADATA: 86 with the uncompressed EC point, or the raw Ed25519
// key (SP 800-73-4 Part 2 Table 11; Yubico for Ed25519).
func publicTLV(k *slotKey) ([]byte, error) {
	s, err := k.signer()
	if err != nil {
		return nil, err
	}
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		e, err := pub.ECDH()
		if err != nil {
			return nil, fmt.Errorf("encoding EC point: %w", err)
		}
		return tlv(tagECPoint, e.Bytes()), nil
	case ed25519.PublicKey:
		return tlv(tagECPoint, pub), nil
	}
	return nil, fmt.Errorf("public key of type %T", s.Public())
}

// keyOperation is GENERAL AUTHENTICATE with an asymmetric key (SP 800-73-4
// Part 2 §3.2.4; Appendix A.4 signature, A.5 key agreement): 82 empty asks
// for the result; 81 carries the digest (ECDSA) or message (Ed25519) to
// sign, 85 the peer's point (ECDH).
func (c *Card) keyOperation(cmd command, items []tlvItem, justVerified bool) response {
	key := c.st.Keys[slotName(cmd.p2)]
	if key == nil {
		return status(swNotFound)
	}
	if cmd.p1 != key.Alg {
		return status(swIncorrectP1P2)
	}
	if v, found := findTLV(items, tagResponse); !found || len(v) != 0 {
		return status(swIncorrectData)
	}
	switch key.PINPolicy {
	case pinOnce:
		if !c.sess.pinVerified {
			return status(swSecurityNotSatisfied)
		}
	case pinAlways:
		if !justVerified {
			return status(swSecurityNotSatisfied)
		}
	}
	s, err := key.signer()
	if err != nil {
		c.log.Error("pivsim: slot key unusable", "slot", slotName(cmd.p2), "err", err)
		return status(swMemoryFailure)
	}

	if msg, found := findTLV(items, tagChallenge); found {
		var sig []byte
		switch k := s.(type) {
		case *ecdsa.PrivateKey:
			if len(msg) > (k.Curve.Params().BitSize+7)/8 {
				return status(swIncorrectData)
			}
			if sig, err = ecdsa.SignASN1(c.rand, k, msg); err != nil {
				return status(swMemoryFailure)
			}
		case ed25519.PrivateKey:
			sig = ed25519.Sign(k, msg)
		}
		c.touch(cmd.p2, key.TouchPolicy)
		return success(tlv(tagDynAuth, tlv(tagResponse, sig)))
	}

	if point, found := findTLV(items, tagExponent); found {
		k, isEC := s.(*ecdsa.PrivateKey)
		if !isEC {
			return status(swIncorrectP1P2)
		}
		priv, err := k.ECDH()
		if err != nil {
			return status(swMemoryFailure)
		}
		peer, err := priv.Curve().NewPublicKey(point)
		if err != nil {
			return status(swIncorrectData)
		}
		secret, err := priv.ECDH(peer)
		if err != nil {
			return status(swIncorrectData)
		}
		c.touch(cmd.p2, key.TouchPolicy)
		return success(tlv(tagDynAuth, tlv(tagResponse, secret)))
	}
	return status(swIncorrectData)
}

// generalAuthenticate dispatches GENERAL AUTHENTICATE (INS 87) on its key
// reference: 9B is the management key, the others hold asymmetric keys.
func (c *Card) generalAuthenticate(cmd command, justVerified bool) response {
	outer, err := parseTLVs(cmd.data)
	if err != nil || len(outer) != 1 || outer[0].tag != tagDynAuth {
		return status(swIncorrectData)
	}
	items, err := parseTLVs(outer[0].value)
	if err != nil {
		return status(swIncorrectData)
	}
	if cmd.p2 == slotMgmt {
		return c.mgmtAuthenticate(cmd, items)
	}
	if !keySlot(cmd.p2) && cmd.p2 != slotAttest {
		return status(swIncorrectP1P2)
	}
	return c.keyOperation(cmd, items, justVerified)
}

// metadata implements Yubico's GET METADATA (INS F7, P2 the reference).
// piv-go reads the management key's algorithm at resp[2] and panics on a
// shorter answer, so every reference answers in full or with an error.
func (c *Card) metadata(cmd command) response {
	if cmd.p1 != 0 {
		return status(swIncorrectP1P2)
	}
	switch ref := cmd.p2; {
	case ref == refPIN || ref == refPUK:
		secret, dflt, total, left := c.st.PIN, defaultPIN, c.st.PINRetries, c.st.PINRetriesLeft
		if ref == refPUK {
			secret, dflt, total, left = c.st.PUK, defaultPUK, c.st.PUKRetries, c.st.PUKRetriesLeft
		}
		isDefault := byte(0)
		if string(secret) == string(padPIN(dflt)) {
			isDefault = 1
		}
		var out []byte
		out = append(out, tlv(mdAlgorithm, []byte{algPIN})...)
		out = append(out, tlv(mdDefault, []byte{isDefault})...)
		out = append(out, tlv(mdRetries, []byte{byte(total), byte(left)})...)
		return success(out)
	case ref == slotMgmt:
		isDefault := byte(0)
		if string(c.st.MgmtKey) == string(defaultMgmtKey) {
			isDefault = 1
		}
		var out []byte
		out = append(out, tlv(mdAlgorithm, []byte{c.st.MgmtAlg})...)
		out = append(out, tlv(mdPolicy, []byte{pinNever, c.st.MgmtTouch})...)
		out = append(out, tlv(mdDefault, []byte{isDefault})...)
		return success(out)
	case keySlot(ref) || ref == slotAttest:
		key := c.st.Keys[slotName(ref)]
		if key == nil {
			return status(swNotFound)
		}
		pub, err := publicTLV(key)
		if err != nil {
			c.log.Error("pivsim: slot key unusable", "slot", slotName(ref), "err", err)
			return status(swMemoryFailure)
		}
		var out []byte
		out = append(out, tlv(mdAlgorithm, []byte{key.Alg})...)
		out = append(out, tlv(mdPolicy, []byte{key.PINPolicy, key.TouchPolicy})...)
		out = append(out, tlv(mdOrigin, []byte{key.Origin})...)
		out = append(out, tlv(mdPublicKey, pub)...)
		return success(out)
	}
	return status(swNotFound)
}

// attest implements Yubico's ATTEST (INS F9, P1 the slot): a certificate
// for the slot's public key, signed by the f9 attestation key. Only keys
// generated on the card can be attested; piv-go reads 6A80 as "not found".
func (c *Card) attest(cmd command) response {
	if cmd.p2 != 0 {
		return status(swIncorrectP1P2)
	}
	key := c.st.Keys[slotName(cmd.p1)]
	if !keySlot(cmd.p1) || key == nil || key.Origin != originGenerated {
		return status(swIncorrectData)
	}
	der, err := c.attestationCert(cmd.p1, key)
	if err != nil {
		c.log.Error("pivsim: cannot attest", "slot", slotName(cmd.p1), "err", err)
		return status(swMemoryFailure)
	}
	return success(der)
}
