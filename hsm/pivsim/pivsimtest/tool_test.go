//go:build cgo

package pivsimtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os/exec"
	"strings"
	"testing"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/coldharbor/coldharbor/hsm/pivsim"
	"github.com/coldharbor/coldharbor/internal/testenv"
)

// yubicoPIVTool runs Yubico's own yubico-piv-tool on reader 0. It filters
// readers on "Yubikey" by default, hence -r.
func yubicoPIVTool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("yubico-piv-tool")
	if err != nil {
		testenv.Need(t, "yubico-piv-tool", "apt-get install yubico-piv-tool (make deps)")
	}
	out, err := exec.Command(path, append([]string{"-r", pivsim.ReaderName(0)}, args...)...).CombinedOutput()
	return string(out), err
}

// TestYubicoPIVTool: a second opinion from Yubico's tool, on a card piv-go
// set up.
func TestYubicoPIVTool(t *testing.T) {
	card, yk, _ := plugged(t)
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature,
		piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := yk.PrivateKey(piv.SlotSignature, pub, piv.KeyAuth{PIN: piv.DefaultPIN})
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t, priv.(crypto.Signer), "coldharbor root key 1")
	if err := yk.SetCertificate(piv.DefaultManagementKey, piv.SlotSignature, cert); err != nil {
		t.Fatal(err)
	}
	yk.Close() // piv-go holds the card exclusively

	// yubico-piv-tool 2.2 lists the slots that hold a certificate, as for a
	// YubiKey.
	out, err := yubicoPIVTool(t, "-a", "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{"Version:\t5.7.4", "Serial Number:\t", "Slot 9c:", "ECCP256", "CN=coldharbor root key 1", "PIN tries left:\t3"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	if out, err := yubicoPIVTool(t, "-a", "verify-pin", "-P", "123456"); err != nil || !strings.Contains(out, "Successfully verified PIN") {
		t.Errorf("verify-pin with the right PIN: %v\n%s", err, out)
	}
	out, err = yubicoPIVTool(t, "-a", "verify-pin", "-P", "000000")
	if err == nil || !strings.Contains(out, "2 tries left") {
		t.Errorf("verify-pin with a wrong PIN: %v\n%s", err, out)
	}
	if out, _ := yubicoPIVTool(t, "-a", "status"); !strings.Contains(out, "PIN tries left:\t2") {
		t.Errorf("status after a wrong PIN:\n%s", out)
	}

	// Its own key generation: 3DES management-key authentication, GENERATE.
	out, err = yubicoPIVTool(t, "-a", "generate", "-s", "9a", "-A", "ECCP256")
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, out)
	}
	block, _ := pem.Decode([]byte(out[strings.Index(out, "-----BEGIN"):]))
	if block == nil {
		t.Fatalf("generate printed no public key:\n%s", out)
	}
	toolPub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	// Its attestation verifies against the simulator's CA.
	out, err = yubicoPIVTool(t, "-a", "attest", "-s", "9c")
	if err != nil {
		t.Fatalf("attest: %v\n%s", err, out)
	}
	block, _ = pem.Decode([]byte(out[strings.Index(out, "-----BEGIN"):]))
	if block == nil {
		t.Fatalf("attest printed no certificate:\n%s", out)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	yk = openYK(t, 0)
	if got := retries(t, yk); got != 2 {
		t.Errorf("piv-go sees %d retries after the tool's wrong PIN, want 2", got)
	}
	info, err := yk.KeyInfo(piv.SlotAuthentication)
	if err != nil || !info.PublicKey.(*ecdsa.PublicKey).Equal(toolPub) {
		t.Errorf("KeyInfo 9a after the tool generated it: %+v, %v", info, err)
	}
	f9, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(card.AttestationCA())
	if a, err := (&piv.Verifier{Roots: roots}).Verify(f9, leaf); err != nil || a.Serial != card.Serial() {
		t.Errorf("the tool's attestation: %+v, %v", a, err)
	}
}
