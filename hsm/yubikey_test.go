//go:build cgo

package hsm_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/hsm/pivsim"
	"github.com/coldharbor/coldharbor/hsm/pivsim/pivsimtest"
)

// The yubikey: backend against software YubiKeys on pcscd, through piv-go
// as with hardware: one pcscd for the whole test, cards plugged and
// unplugged as a holder would.
func TestYubiKeyBackend(t *testing.T) {
	ctx := context.Background()
	pivsimtest.StartPCSCD(t)
	dir := t.TempDir()
	pin := func(p string) hsm.Option { return hsm.WithSecrets(hsm.StaticSecret(p)) }

	t.Run("no card", func(t *testing.T) {
		if _, err := hsm.Open(ctx, "yubikey:"); !errors.Is(err, hsm.ErrNoCard) {
			t.Fatalf("open with no card: %v", err)
		}
	})

	a := pivsimtest.Plug(t, filepath.Join(dir, "a.json"), 0, pivsim.WithSerial(11111111))
	var notices []string
	gen, err := hsm.Generate(ctx, "yubikey:", pin("123456"), hsm.WithPolicies("once", "always"))
	if err != nil {
		t.Fatal(err)
	}
	if gen.URI.String() != "yubikey:serial=11111111;slot=9c" {
		t.Errorf("generated key URI %s", gen.URI)
	}
	t.Run("occupied slot", func(t *testing.T) {
		_, err := hsm.Generate(ctx, "yubikey:", pin("123456"))
		if !errors.Is(err, hsm.ErrKeyExists) {
			t.Fatalf("generate over a key: %v", err)
		}
	})
	t.Run("public only without a PIN", func(t *testing.T) {
		k, err := hsm.Open(ctx, "yubikey:serial=11111111")
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		if k.Private() || k.Attest == nil {
			t.Fatalf("private %v attest %v", k.Private(), k.Attest != nil)
		}
		att, err := k.Attest(pool(a.AttestationCA()))
		if err != nil {
			t.Fatal(err)
		}
		if att.Serial != 11111111 || att.PINPolicy != "once" || att.TouchPolicy != "always" || !strings.HasPrefix(att.Firmware, "5.7") {
			t.Fatalf("attestation %+v", att)
		}
		if _, err := k.Attest(nil); !errors.Is(err, hsm.ErrAttestation) {
			t.Fatalf("a simulator attested by Yubico's root: %v", err)
		}
	})
	t.Run("sign with touch notice", func(t *testing.T) {
		k, err := hsm.Open(ctx, "yubikey:", pin("123456"), hsm.WithNotify(func(m string) { notices = append(notices, m) }))
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		msg := []byte("targets metadata")
		sig, err := k.Signer.SignMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if err := hsm.VerifySignature(gen.Public, msg, sig); err != nil {
			t.Fatal(err)
		}
		if len(notices) != 1 || !strings.Contains(notices[0], "touch the YubiKey 11111111") {
			t.Fatalf("notices %v", notices)
		}
	})
	t.Run("wrong PIN then blocked", func(t *testing.T) {
		_, err := hsm.Open(ctx, "yubikey:", pin("000000"))
		var pe *hsm.PINError
		if !errors.As(err, &pe) || pe.Retries != 2 {
			t.Fatalf("wrong PIN: %v", err)
		}
		if !strings.Contains(err.Error(), "2 tries left") {
			t.Errorf("message %q does not say the tries left", err)
		}
		hsm.Open(ctx, "yubikey:", pin("000000"))
		hsm.Open(ctx, "yubikey:", pin("000000"))
		if _, err := hsm.Open(ctx, "yubikey:", pin("123456")); !errors.Is(err, hsm.ErrPINBlocked) {
			t.Fatalf("after three wrong PINs: %v", err)
		}
	})

	b := pivsimtest.Plug(t, filepath.Join(dir, "b.json"), 1, pivsim.WithSerial(22222222))
	t.Run("two cards, no serial", func(t *testing.T) {
		_, err := hsm.Open(ctx, "yubikey:")
		if err == nil || !strings.Contains(err.Error(), "2 YubiKeys are plugged in") || !strings.Contains(err.Error(), "22222222") {
			t.Fatalf("two cards: %v", err)
		}
	})
	t.Run("list", func(t *testing.T) {
		devs, err := hsm.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, d := range devs {
			got[d.Serial] = strings.Join(d.Slots, ",")
		}
		if got["11111111"] != "9c" || got["22222222"] != "" || len(devs) != 2 {
			t.Fatalf("list: %+v", devs)
		}
	})
	t.Run("unknown serial", func(t *testing.T) {
		if _, err := hsm.Open(ctx, "yubikey:serial=33333333"); !errors.Is(err, hsm.ErrNoCard) {
			t.Fatalf("unknown serial: %v", err)
		}
	})
	pivsimtest.Unplug(t, b)
	pivsimtest.Unplug(t, a)
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
