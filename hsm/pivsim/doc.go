// Package pivsim is a software YubiKey 5 (PIV applet, firmware 5.7.4) that
// plugs into pcscd through vsmartcard's vpcd driver, so that piv-go,
// yubico-piv-tool and our hsm/yubikey backend talk to it exactly as to
// hardware. It exists for tests and ceremony rehearsals; production code
// never imports it (docs/design.md, section 5; the depcheck tests enforce it).
//
//	card, err := pivsim.Open("card.json")              // made on first use
//	err = card.Serve(ctx, pivsim.ReaderAddr(0))        // "Virtual PCD 00 00"
//
// In tests, pivsimtest.StartPCSCD and pivsimtest.Plug do the plumbing (the
// subpackage pivsimtest, kept apart so that the binary links no test code).
//
// The package mirrors a card's layers, as piv-go splits its own:
//
//	transport.go   vpcd: TCP, length-prefixed messages, power/reset/ATR controls, reconnecting
//	apdu.go        ISO 7816-4 framing: status words, command chaining, GET RESPONSE, BER-TLV
//	applet.go      PIV applet: instruction dispatch, SELECT, session state
//	auth.go        PIN, PUK, management key (3DES/AES), SET PIN RETRIES, RESET
//	keys.go        GENERATE, IMPORT, GENERAL AUTHENTICATE (sign, ECDH), GET METADATA, ATTEST
//	objects.go     GET DATA / PUT DATA
//	attest.go      attestation CA, f9 key, per-key attestation certificates
//	management.go  Yubico's management applet, as far as piv-go's FormFactor reads it
//	state.go       the state file (JSON, written atomically)
//
// Implemented: SELECT, GET VERSION, GET SERIAL, VERIFY (with the status
// query and P1=FF), CHANGE REFERENCE DATA (PIN, PUK), RESET RETRY COUNTER,
// GENERAL AUTHENTICATE (management key in the witness and challenge flows;
// ECDSA P-256/P-384 and Ed25519 signatures; ECDH), SET MANAGEMENT KEY,
// GENERATE ASYMMETRIC KEY PAIR and IMPORT (P-256, P-384, Ed25519, with PIN
// and touch policies), GET/PUT DATA, ATTEST, GET METADATA, SET PIN
// RETRIES, RESET; GET RESPONSE and chaining below them. Not implemented,
// answered as a YubiKey without the feature would: RSA and X25519 keys
// (6A80), biometric verification and secure messaging, MOVE/DELETE KEY.
//
// Differences from hardware worth knowing: touch is granted at once and
// logged; the default management key is 3DES (firmware 5.7 ships AES-192
// with the same bytes; piv-go reads the type from GET METADATA either way);
// attestations chain to the card's own CA (AttestationCA), never to Yubico's,
// so piv.Verify refuses them and piv.Verifier{Roots: …} accepts them.
//
// The state file holds the private keys in the clear, mode 0600: one
// state file backs one Card at a time.
package pivsim
