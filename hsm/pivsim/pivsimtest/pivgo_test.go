//go:build cgo

package pivsimtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/coldharbor/coldharbor/hsm/pivsim"
)

// These tests run the real stack: pcscd with vsmartcard-vpcd, the card on
// a vpcd reader, and piv-go talking to it as to a YubiKey. pcscd is one per
// host: none of them is parallel.

// plugged starts pcscd, plugs a new card into reader 0 and opens it with piv-go.
func plugged(t *testing.T, opts ...pivsim.Option) (*Card, *piv.YubiKey, string) {
	t.Helper()
	StartPCSCD(t)
	path := filepath.Join(t.TempDir(), "card.json")
	card := Plug(t, path, 0, opts...)
	return card, openYK(t, 0), path
}

func openYK(t *testing.T, reader int) *piv.YubiKey {
	t.Helper()
	yk, err := piv.Open(pivsim.ReaderName(reader))
	if err != nil {
		t.Fatalf("piv.Open(%q): %v", pivsim.ReaderName(reader), err)
	}
	t.Cleanup(func() { yk.Close() })
	return yk
}

func retries(t *testing.T, yk *piv.YubiKey) int {
	t.Helper()
	n, err := yk.Retries()
	if err != nil {
		t.Fatalf("Retries: %v", err)
	}
	return n
}

func authErr(t *testing.T, err error, retries int) {
	t.Helper()
	var ae piv.AuthErr
	if !errors.As(err, &ae) || ae.Retries != retries {
		t.Fatalf("got %v, want AuthErr with %d retries", err, retries)
	}
}

func TestPIVGoOpen(t *testing.T) {
	card, yk, _ := plugged(t)
	cards, err := piv.Cards()
	if err != nil || !slices.Contains(cards, "Virtual PCD 00 00") {
		t.Errorf("piv.Cards() = %q, %v", cards, err)
	}
	if v := yk.Version(); v != (piv.Version{Major: 5, Minor: 7, Patch: 4}) {
		t.Errorf("Version %+v, want 5.7.4", v)
	}
	serial, err := yk.Serial()
	if err != nil || serial != card.Serial() {
		t.Errorf("Serial %d, %v; want %d", serial, err, card.Serial())
	}
	if ff, err := yk.FormFactor(); err != nil || ff != piv.FormfactorUSBAKeychain {
		t.Errorf("FormFactor %v, %v", ff, err)
	}
	// FormFactor selects another applet and back: PIV still answers.
	if _, err := yk.Serial(); err != nil {
		t.Errorf("Serial after FormFactor: %v", err)
	}
}

func TestPIVGoPINAndPUK(t *testing.T) {
	_, yk, _ := plugged(t)
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatalf("default PIN: %v", err)
	}
	authErr(t, yk.VerifyPIN("000000"), 2)
	authErr(t, yk.VerifyPIN("000000"), 1)
	if got := retries(t, yk); got != 1 {
		t.Errorf("Retries %d after two wrong PINs", got)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatalf("right PIN after two wrong: %v", err)
	}

	for want := 2; want >= 0; want-- {
		authErr(t, yk.VerifyPIN("000000"), want)
	}
	err := yk.VerifyPIN(piv.DefaultPIN)
	authErr(t, err, 0)
	if !strings.Contains(err.Error(), "6983") {
		t.Errorf("blocked PIN: %v, want 6983", err)
	}

	authErr(t, yk.Unblock("00000000", "654321"), 2)
	if err := yk.Unblock(piv.DefaultPUK, "654321"); err != nil {
		t.Fatalf("Unblock: %v", err)
	}
	if got := retries(t, yk); got != 3 {
		t.Errorf("Retries %d after unblocking", got)
	}
	if err := yk.VerifyPIN("654321"); err != nil {
		t.Fatalf("PIN set by Unblock: %v", err)
	}
	if err := yk.SetPIN("654321", "11223344"); err != nil {
		t.Fatalf("SetPIN: %v", err)
	}
	authErr(t, yk.VerifyPIN("654321"), 2)
	if err := yk.VerifyPIN("11223344"); err != nil {
		t.Fatalf("new PIN: %v", err)
	}
	if err := yk.SetPIN("11223344", "123"); err == nil {
		t.Error("SetPIN accepted a 3-digit PIN")
	}
	if err := yk.SetPUK(piv.DefaultPUK, "87654321"); err != nil {
		t.Fatalf("SetPUK: %v", err)
	}
	authErr(t, yk.SetPUK(piv.DefaultPUK, "87654321"), 2)
	if err := yk.Unblock("87654321", "123456"); err != nil {
		t.Fatalf("Unblock with the new PUK: %v", err)
	}
}

func TestPIVGoManagementKeys(t *testing.T) {
	_, yk, _ := plugged(t)
	gen := piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever}
	if _, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotAuthentication, gen); err != nil {
		t.Fatalf("with the default 3DES key: %v", err)
	}
	old := piv.DefaultManagementKey
	// piv-go sets AES keys on firmware 5.4+ (16, 24, 32 bytes) and learns the
	// key's algorithm from GET METADATA before authenticating.
	for _, n := range []int{16, 32, 24} {
		key := make([]byte, n)
		rand.Read(key)
		if err := yk.SetManagementKey(old, key); err != nil {
			t.Fatalf("SetManagementKey AES-%d: %v", n*8, err)
		}
		if _, err := yk.GenerateKey(old, piv.SlotAuthentication, gen); err == nil {
			t.Fatalf("the replaced key still works (AES-%d)", n*8)
		}
		if _, err := yk.GenerateKey(key, piv.SlotAuthentication, gen); err != nil {
			t.Fatalf("with the AES-%d key: %v", n*8, err)
		}
		old = key
	}
}

// signAndCheck signs a digest through piv-go's crypto.Signer and verifies
// it against pub.
func signAndCheck(t *testing.T, priv crypto.PrivateKey, pub crypto.PublicKey) error {
	t.Helper()
	s, ok := priv.(crypto.Signer)
	if !ok {
		t.Fatalf("%T is not a crypto.Signer", priv)
	}
	msg := []byte("sign me " + time.Now().String())
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			return err
		}
		if !ecdsa.VerifyASN1(pub, d[:], sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	case ed25519.PublicKey:
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			return err
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatal("Ed25519 signature does not verify")
		}
	default:
		t.Fatalf("public key %T", pub)
	}
	return nil
}

// logRecorder keeps the card's log lines for assertions.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	return len(p), nil
}

func (l *logRecorder) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func TestPIVGoGenerateAndSign(t *testing.T) {
	logs := &logRecorder{}
	_, yk, _ := plugged(t, pivsim.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	for _, tc := range []struct {
		slot piv.Slot
		key  piv.Key
	}{
		{piv.SlotSignature, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyAlways}},
		{piv.SlotAuthentication, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyCached}},
		{piv.SlotCardAuthentication, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever}},
		{piv.SlotKeyManagement, piv.Key{Algorithm: piv.AlgorithmEd25519, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever}},
		{piv.SlotKeyManagement, piv.Key{Algorithm: piv.AlgorithmEC384, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever}},
	} {
		pub, err := yk.GenerateKey(piv.DefaultManagementKey, tc.slot, tc.key)
		if err != nil {
			t.Fatalf("GenerateKey %v %+v: %v", tc.slot, tc.key, err)
		}
		info, err := yk.KeyInfo(tc.slot)
		if err != nil {
			t.Fatalf("KeyInfo %v: %v", tc.slot, err)
		}
		if info.Algorithm != tc.key.Algorithm || info.PINPolicy != tc.key.PINPolicy ||
			info.TouchPolicy != tc.key.TouchPolicy || info.Origin != piv.OriginGenerated {
			t.Errorf("KeyInfo %v = %+v, generated with %+v", tc.slot, info, tc.key)
		}
		if !info.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Errorf("KeyInfo %v: another public key", tc.slot)
		}

		priv, err := yk.PrivateKey(tc.slot, pub, piv.KeyAuth{PIN: piv.DefaultPIN})
		if err != nil {
			t.Fatalf("PrivateKey %v: %v", tc.slot, err)
		}
		for range 2 { // "always" verifies the PIN again before each signature
			if err := signAndCheck(t, priv, pub); err != nil {
				t.Fatalf("Sign %v %+v: %v", tc.slot, tc.key, err)
			}
		}

		// Without the PIN, only a "never" key signs.
		noPIN, err := yk.PrivateKey(tc.slot, pub, piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
		if err != nil {
			t.Fatal(err)
		}
		authErr(t, yk.VerifyPIN("000000"), 2) // a failed VERIFY forgets the verified PIN
		err = signAndCheck(t, noPIN, pub)
		if tc.key.PINPolicy == piv.PINPolicyNever && err != nil {
			t.Errorf("%v with PIN policy never: %v", tc.slot, err)
		}
		if tc.key.PINPolicy != piv.PINPolicyNever && (err == nil || !strings.Contains(err.Error(), "6982")) {
			t.Errorf("%v with PIN policy %v signed without the PIN: %v", tc.slot, tc.key.PINPolicy, err)
		}
		if err := yk.VerifyPIN(piv.DefaultPIN); err != nil { // restores the retries
			t.Fatal(err)
		}
	}
	if n := logs.count("touch simulated"); n != 4 {
		t.Errorf("%d touches logged, want 4 (two signatures each in 9c and 9a)", n)
	}
}

// selfSigned makes a certificate for the key in a slot, signed by that key
// on the card, padded so that storing it takes command chaining and reading
// it a GET RESPONSE.
func selfSigned(t *testing.T, signer crypto.Signer, cn string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn, OrganizationalUnit: []string{strings.Repeat("x", 900)}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatalf("self-signing on the card: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestPIVGoCertificates(t *testing.T) {
	_, yk, _ := plugged(t)
	if _, err := yk.Certificate(piv.SlotSignature); !errors.Is(err, piv.ErrNotFound) {
		t.Fatalf("empty slot: %v, want ErrNotFound", err)
	}
	key := piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever}
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, key)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := yk.PrivateKey(piv.SlotSignature, pub, piv.KeyAuth{PIN: piv.DefaultPIN})
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t, priv.(crypto.Signer), "pivsim test")
	if len(cert.Raw) < 600 {
		t.Fatalf("certificate of %d bytes exercises no chaining", len(cert.Raw))
	}
	if err := yk.SetCertificate(piv.DefaultManagementKey, piv.SlotSignature, cert); err != nil {
		t.Fatalf("SetCertificate: %v", err)
	}
	got, err := yk.Certificate(piv.SlotSignature)
	if err != nil {
		t.Fatalf("Certificate: %v", err)
	}
	if !got.Equal(cert) {
		t.Error("read back another certificate")
	}
	if err := yk.SetCertificate([]byte("wrong management key 24b"), piv.SlotSignature, cert); err == nil {
		t.Error("SetCertificate with a wrong management key")
	}
}

func TestPIVGoAttestation(t *testing.T) {
	card, yk, _ := plugged(t)
	if _, err := yk.Attest(piv.SlotSignature); !errors.Is(err, piv.ErrNotFound) {
		t.Fatalf("attesting an empty slot: %v, want ErrNotFound", err)
	}
	key := piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyCached}
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := yk.Attest(piv.SlotSignature)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	f9, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatalf("AttestationCertificate: %v", err)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(pub) {
		t.Error("attestation of another key")
	}

	roots := x509.NewCertPool()
	roots.AddCert(card.AttestationCA())
	a, err := (&piv.Verifier{Roots: roots}).Verify(f9, leaf)
	if err != nil {
		t.Fatalf("Verifier with the simulator's CA: %v", err)
	}
	want := piv.Attestation{
		Version: piv.Version{Major: 5, Minor: 7, Patch: 4}, Serial: card.Serial(),
		Formfactor: piv.FormfactorUSBAKeychain, PINPolicy: piv.PINPolicyAlways,
		TouchPolicy: piv.TouchPolicyCached, Slot: piv.SlotSignature,
	}
	if *a != want {
		t.Errorf("attestation %+v, want %+v", *a, want)
	}
	if _, err := piv.Verify(f9, leaf); err == nil {
		t.Error("piv.Verify (Yubico's roots) accepted a simulated attestation")
	}
	other, err := pivsim.Open(filepath.Join(t.TempDir(), "other.json"))
	if err != nil {
		t.Fatal(err)
	}
	strangers := x509.NewCertPool()
	strangers.AddCert(other.AttestationCA())
	if _, err := (&piv.Verifier{Roots: strangers}).Verify(f9, leaf); err == nil {
		t.Error("another card's CA accepted this card's attestation")
	}

	if _, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotKeyManagement,
		piv.Key{Algorithm: piv.AlgorithmEd25519, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever}); err != nil {
		t.Fatal(err)
	}
	ed, err := yk.Attest(piv.SlotKeyManagement)
	if err != nil {
		t.Fatalf("Attest Ed25519: %v", err)
	}
	if a, err := (&piv.Verifier{Roots: roots}).Verify(f9, ed); err != nil || a.Slot != piv.SlotKeyManagement {
		t.Errorf("Ed25519 attestation: %+v, %v", a, err)
	}
}

func TestPIVGoProtectedMetadata(t *testing.T) {
	_, yk, _ := plugged(t)
	m, err := yk.Metadata(piv.DefaultPIN)
	if err != nil || m.ManagementKey != nil {
		t.Fatalf("fresh card: %+v, %v", m, err)
	}
	key := make([]byte, 24)
	rand.Read(key)
	if err := yk.SetMetadata(piv.DefaultManagementKey, &piv.Metadata{ManagementKey: &key}); err != nil {
		t.Fatalf("SetMetadata: %v", err)
	}
	m, err = yk.Metadata(piv.DefaultPIN)
	if err != nil || m.ManagementKey == nil || !bytes.Equal(*m.ManagementKey, key) {
		t.Fatalf("Metadata: %+v, %v", m, err)
	}
	if _, err := yk.Metadata("000000"); err == nil {
		t.Error("Metadata with a wrong PIN")
	}
}

func TestPIVGoSetRetriesAndReset(t *testing.T) {
	_, yk, _ := plugged(t)
	if err := yk.SetPIN(piv.DefaultPIN, "24682468"); err != nil {
		t.Fatal(err)
	}
	if err := yk.SetRetries(piv.DefaultManagementKey, "24682468", 5, 4); err != nil {
		t.Fatalf("SetRetries: %v", err)
	}
	if got := retries(t, yk); got != 5 {
		t.Errorf("Retries %d after SetRetries(5, 4)", got)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil { // SET PIN RETRIES restores the default PIN
		t.Fatalf("default PIN after SetRetries: %v", err)
	}

	f9, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature,
		piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever}); err != nil {
		t.Fatal(err)
	}
	newKey := make([]byte, 32)
	rand.Read(newKey)
	if err := yk.SetManagementKey(piv.DefaultManagementKey, newKey); err != nil {
		t.Fatal(err)
	}
	if err := yk.Reset(); err != nil { // piv-go blocks PIN and PUK itself first
		t.Fatalf("Reset: %v", err)
	}
	if _, err := yk.KeyInfo(piv.SlotSignature); err == nil {
		t.Error("key survived Reset")
	}
	if got := retries(t, yk); got != 3 {
		t.Errorf("Retries %d after Reset", got)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Errorf("default PIN after Reset: %v", err)
	}
	if _, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature,
		piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever}); err != nil {
		t.Errorf("default management key after Reset: %v", err)
	}
	after, err := yk.AttestationCertificate()
	if err != nil || !after.Equal(f9) {
		t.Errorf("attestation certificate after Reset: %v", err)
	}
}

// TestStateFileRoundTrip unplugs a card and plugs it back in, into the
// same reader and then the other: keys, serial and PIN state survive.
func TestStateFileRoundTrip(t *testing.T) {
	card, yk, path := plugged(t)
	serial := card.Serial()
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature,
		piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyNever})
	if err != nil {
		t.Fatal(err)
	}
	if err := yk.SetPIN(piv.DefaultPIN, "13572468"); err != nil {
		t.Fatal(err)
	}
	authErr(t, yk.VerifyPIN("000000"), 2)

	for _, reader := range []int{0, 1} {
		yk.Close()
		Unplug(t, card)
		if _, err := piv.Open(pivsim.ReaderName(0)); err == nil {
			t.Fatal("piv.Open found a card after Unplug")
		}
		card = Plug(t, path, reader)
		if card.Serial() != serial {
			t.Fatalf("serial %d after re-plugging, want %d", card.Serial(), serial)
		}
		yk = openYK(t, reader)
		if got := retries(t, yk); got != 2 {
			t.Errorf("reader %d: Retries %d after re-plugging, want 2", reader, got)
		}
		priv, err := yk.PrivateKey(piv.SlotSignature, pub, piv.KeyAuth{PIN: "13572468"})
		if err != nil {
			t.Fatal(err)
		}
		if err := signAndCheck(t, priv, pub); err != nil {
			t.Fatalf("reader %d: signing after re-plugging: %v", reader, err)
		}
		// Signing verified the PIN (3 tries again); a wrong one now is
		// carried to the next insertion.
		authErr(t, yk.VerifyPIN("000000"), 2)
	}
}

func TestTwoReaders(t *testing.T) {
	StartPCSCD(t)
	dir := t.TempDir()
	a := Plug(t, filepath.Join(dir, "a.json"), 0)
	b := Plug(t, filepath.Join(dir, "b.json"), 1)
	if a.Serial() == b.Serial() {
		t.Fatalf("two cards with serial %d", a.Serial())
	}
	cards, err := piv.Cards()
	if err != nil || !slices.Contains(cards, pivsim.ReaderName(0)) || !slices.Contains(cards, pivsim.ReaderName(1)) {
		t.Fatalf("piv.Cards() = %q, %v", cards, err)
	}
	for reader, card := range []*Card{a, b} {
		yk := openYK(t, reader)
		if s, err := yk.Serial(); err != nil || s != card.Serial() {
			t.Errorf("reader %d: serial %d, %v; want %d", reader, s, err, card.Serial())
		}
	}
}
