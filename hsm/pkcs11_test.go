//go:build cgo

package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/coldharbor/coldharbor/internal/testhsm"
)

func mustGenerate(t *testing.T, uri string, opts ...Option) *Key {
	t.Helper()
	k, err := Generate(context.Background(), uri, opts...)
	if err != nil {
		t.Fatalf("Generate(%s): %v", redact(uri), err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func mustOpen(t *testing.T, uri string, opts ...Option) *Key {
	t.Helper()
	k, err := Open(context.Background(), uri, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", redact(uri), err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func checkSigns(t *testing.T, k *Key) {
	t.Helper()
	msg := []byte("timestamp metadata, canonical JSON")
	sig, err := k.Signer.SignMessage(strings.NewReader(string(msg)))
	if err != nil {
		t.Fatalf("SignMessage: %v", err)
	}
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(k.Public.(*ecdsa.PublicKey), h[:], sig) {
		t.Fatal("signature from the token does not verify")
	}
	// And as a plain crypto.Signer, handed a digest.
	sig, err = k.Signer.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := VerifySignature(k.Public, msg, sig); err != nil {
		t.Fatal(err)
	}
}

func samePublic(t *testing.T, a, b crypto.PublicKey) {
	t.Helper()
	if !a.(*ecdsa.PublicKey).Equal(b) {
		t.Fatal("the public keys differ")
	}
}

func TestPKCS11GenerateOpenSign(t *testing.T) {
	tok := testhsm.NewToken(t, "")
	gen := mustGenerate(t, tok.URI("object=timestamp"))
	if err := CheckPublicKey(gen.Public); err != nil {
		t.Fatal(err)
	}
	if len(gen.URI.Attrs["id"]) != newKeyIDLen {
		t.Errorf("generated key URI %s carries no id", gen.URI)
	}
	checkSigns(t, gen)
	if err := gen.Close(); err != nil {
		t.Fatal(err)
	}

	k := mustOpen(t, tok.URI("object=timestamp"))
	samePublic(t, gen.Public, k.Public)
	checkSigns(t, k)

	// The URI Generate returns names the key by id as well, and opens it.
	byID := mustOpen(t, gen.URI.String()+"&pin-value="+tok.PIN)
	samePublic(t, gen.Public, byID.Public)
}

func TestPKCS11GenerateRefusesExistingName(t *testing.T) {
	tok := testhsm.NewToken(t, "")
	first := mustGenerate(t, tok.URI("object=snapshot;id=%01"))
	first.Close()

	for _, attrs := range []string{"object=snapshot", "object=other;id=%01"} {
		_, err := Generate(context.Background(), tok.URI(attrs))
		if !errors.Is(err, ErrKeyExists) || !strings.Contains(err.Error(), "holds") {
			t.Fatalf("Generate over %s: got %v, want ErrKeyExists naming the key", attrs, err)
		}
	}

	second := mustGenerate(t, tok.URI("object=snapshot"), WithForce(true))
	if second.Public.(*ecdsa.PublicKey).Equal(first.Public) {
		t.Fatal("--force kept the old key")
	}
	second.Close()
	k := mustOpen(t, tok.URI("object=snapshot"))
	samePublic(t, second.Public, k.Public)
}

func TestPKCS11WrongPIN(t *testing.T) {
	tok := testhsm.NewToken(t, "")
	mustGenerate(t, tok.URI("object=timestamp")).Close()

	uri := strings.Replace(tok.URI("object=timestamp"), "pin-value="+tok.PIN, "pin-value=987654", 1)
	_, err := Open(context.Background(), uri)
	var wrong *PINError
	if !errors.As(err, &wrong) {
		t.Fatalf("got %v, want a *PINError (as a YubiKey gives)", err)
	}
	var pe pkcs11.Error
	if !errors.As(err, &pe) || pe != pkcs11.CKR_PIN_INCORRECT {
		t.Errorf("error %v does not wrap CKR_PIN_INCORRECT", err)
	}
	if strings.Contains(err.Error(), "987654") {
		t.Errorf("the error shows the PIN: %v", err)
	}
	// The token still opens with the right PIN after a failure.
	mustOpen(t, tok.URI("object=timestamp"))
}

func TestPKCS11LoginErrors(t *testing.T) {
	// SoftHSM2 never locks a PIN, so the mapping is checked directly.
	s := p11Spec{uri: URI{Scheme: SchemePKCS11, Attrs: map[string]string{"token": "t"}}}
	tok := p11Token{info: pkcs11.TokenInfo{Label: "t", SerialNumber: "42"}}
	wrongPIN := func(err error) bool { return errors.As(err, new(*PINError)) }
	blocked := func(err error) bool { return errors.Is(err, ErrPINBlocked) }
	for _, c := range []struct {
		code uint
		want func(error) bool
		what string
	}{
		{pkcs11.CKR_PIN_INCORRECT, wrongPIN, "a *PINError"},
		{pkcs11.CKR_PIN_LEN_RANGE, wrongPIN, "a *PINError"},
		{pkcs11.CKR_PIN_LOCKED, blocked, "ErrPINBlocked"},
	} {
		err := loginError(s, tok, pkcs11.Error(c.code))
		if !c.want(err) || !errors.Is(err, pkcs11.Error(c.code)) {
			t.Errorf("%v: got %v, want %s wrapping the module's code", pkcs11.Error(c.code), err, c.what)
		}
	}
}

func TestPKCS11ObjectNotFound(t *testing.T) {
	tok := testhsm.NewToken(t, "")
	mustGenerate(t, tok.URI("object=timestamp;id=%0A")).Close()

	_, err := Open(context.Background(), tok.URI("object=snapshot"))
	if !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("got %v, want ErrObjectNotFound", err)
	}
	if !strings.Contains(err.Error(), "object=timestamp;id=%0A") {
		t.Errorf("error does not list the key present: %v", err)
	}

	_, err = Open(context.Background(), tok.URI(""))
	if err == nil || !strings.Contains(err.Error(), "object=LABEL") {
		t.Errorf("a URI naming no key: got %v", err)
	}
}

func TestPKCS11ModulePath(t *testing.T) {
	ctx := context.Background()
	_, err := Open(ctx, "pkcs11:token=t;object=k?pin-value=1234")
	if err == nil || !strings.Contains(err.Error(), "module-path") || strings.Contains(err.Error(), "1234") {
		t.Errorf("no module-path: got %v", err)
	}
	_, err = Open(ctx, "pkcs11:token=t;object=k?module-path=/nonexistent/libp11.so")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/nonexistent/libp11.so") {
		t.Errorf("missing module: got %v", err)
	}
	notLib := filepath.Join(t.TempDir(), "lib.so")
	if err := os.WriteFile(notLib, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, "pkcs11:token=t;object=k?module-path="+notLib)
	if err == nil || !strings.Contains(err.Error(), "cannot be loaded") {
		t.Errorf("a file that is no library: got %v", err)
	}
}

func TestPKCS11TokenNotFound(t *testing.T) {
	tok := testhsm.NewToken(t, "site-a")
	tok.AddToken(t, "site-b")

	_, err := Open(context.Background(), strings.Replace(tok.URI("object=k"), "token=site-a", "token=site-c", 1))
	if !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("got %v, want ErrTokenNotFound", err)
	}
	for _, l := range []string{`"site-a"`, `"site-b"`} {
		if !strings.Contains(err.Error(), l) {
			t.Errorf("error does not list token %s: %v", l, err)
		}
	}
}

func TestPKCS11TwoTokens(t *testing.T) {
	a := testhsm.NewToken(t, "site-a")
	b := a.AddToken(t, "site-b")
	ka := mustGenerate(t, a.URI("object=timestamp"))
	kb := mustGenerate(t, b.URI("object=timestamp"))
	if ka.Public.(*ecdsa.PublicKey).Equal(kb.Public) {
		t.Fatal("two tokens returned one key")
	}
	ka.Close()
	kb.Close()
	samePublic(t, kb.Public, mustOpen(t, b.URI("object=timestamp")).Public)

	// With no token attribute, two tokens are one too many.
	_, err := Open(context.Background(), "pkcs11:object=timestamp?module-path="+a.Module+"&pin-value=1234")
	if err == nil || !strings.Contains(err.Error(), "2 tokens match") {
		t.Errorf("ambiguous token: got %v", err)
	}
}

func TestPKCS11DuplicateLabel(t *testing.T) {
	tok := testhsm.NewToken(t, "")
	for _, id := range []byte{1, 2} {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tok.ImportKey(t, "dup", []byte{id}, priv)
	}
	_, err := Open(context.Background(), tok.URI("object=dup"))
	if !errors.Is(err, ErrObjectAmbiguous) {
		t.Fatalf("got %v, want ErrObjectAmbiguous", err)
	}
	if !strings.Contains(err.Error(), "id=%01") || !strings.Contains(err.Error(), "id=%02") {
		t.Errorf("error does not name both keys: %v", err)
	}
	checkSigns(t, mustOpen(t, tok.URI("object=dup;id=%02")))
}

func TestPKCS11KeyFromAnotherTool(t *testing.T) {
	tok := testhsm.NewToken(t, "")
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok.ImportKey(t, "imported", []byte{7}, priv)
	k := mustOpen(t, tok.URI("object=imported"))
	samePublic(t, &priv.PublicKey, k.Public)
	checkSigns(t, k)
}

func TestPKCS11RefusesP384(t *testing.T) {
	tok := testhsm.NewToken(t, "")
	priv, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tok.ImportKey(t, "p384", []byte{9}, priv)
	_, err := Open(context.Background(), tok.URI("object=p384"))
	if !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("got %v, want ErrUnsupportedKey", err)
	}
	// The refused key's session is released: the token opens again.
	mustGenerate(t, tok.URI("object=p256")).Close()
	mustOpen(t, tok.URI("object=p256"))
}

func TestPKCS11PINSources(t *testing.T) {
	tok := testhsm.NewToken(t, "")
	mustGenerate(t, tok.URI("object=timestamp")).Close()
	noPIN := strings.Replace(tok.URI("object=timestamp"), "&pin-value="+tok.PIN, "", 1)

	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"file:" + pinFile, "file://" + pinFile, pinFile} {
		mustOpen(t, noPIN+"&pin-source="+src).Close()
	}

	var asked []SecretRequest
	secret := func(_ context.Context, req SecretRequest) ([]byte, error) {
		asked = append(asked, req)
		return []byte(tok.PIN), nil
	}
	mustOpen(t, noPIN, WithSecrets(secret)).Close()
	if len(asked) != 1 || asked[0].Kind != PIN || asked[0].Key.Attrs["object"] != "timestamp" {
		t.Errorf("SecretFunc asked %+v, want one PIN request for the key", asked)
	}

	_, err := Open(context.Background(), noPIN)
	if !errors.Is(err, ErrNoSecret) || !strings.Contains(err.Error(), "COLDHARBOR_PIN") {
		t.Errorf("no PIN source: got %v", err)
	}
}

func TestPKCS11List(t *testing.T) {
	tok := testhsm.NewToken(t, "site-a")
	tok.AddToken(t, "site-b")
	mustGenerate(t, tok.URI("object=timestamp;id=%AB")).Close()

	devs, err := List(context.Background(), WithPKCS11Modules(tok.Module))
	if err != nil {
		t.Fatal(err)
	}
	// List also shows YubiKeys; a software one another test binary has
	// plugged into the host's pcscd may be among them.
	devs = slices.DeleteFunc(devs, func(d Device) bool { return d.Kind != "pkcs11" })
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"site-a", "site-b"}) {
		t.Fatalf("List shows tokens %q, want site-a and site-b (and not SoftHSM2's free slot)", names)
	}
	i := slices.IndexFunc(devs, func(d Device) bool { return d.Name == "site-a" })
	d := devs[i]
	if d.Kind != "pkcs11" || d.Serial == "" || !strings.Contains(d.Firmware, "SoftHSM") {
		t.Errorf("device %+v", d)
	}
	if !slices.Equal(d.Slots, []string{"object=timestamp;id=%AB"}) {
		t.Errorf("keys %q, want the key generated", d.Slots)
	}
	if want := "pkcs11:token=site-a?module-path=" + tok.Module; d.URI != want {
		t.Errorf("URI %q, want %q", d.URI, want)
	}
	// The listed URI, with the key's attributes and a PIN, opens the key.
	base, query, _ := strings.Cut(d.URI, "?")
	mustOpen(t, base+";"+d.Slots[0]+"?"+query+"&pin-value="+tok.PIN)

	_, err = List(context.Background(), WithPKCS11Modules("/nonexistent/lib.so"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List of a missing module: got %v", err)
	}
}

// Snapshot and timestamp keys usually share one HSM, opened together by one
// process: the module is initialised once and shared.
func TestPKCS11KeysOpenTogether(t *testing.T) {
	tok := testhsm.NewToken(t, "")
	mustGenerate(t, tok.URI("object=snapshot")).Close()
	mustGenerate(t, tok.URI("object=timestamp")).Close()

	keys := make([]*Key, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			keys[i], errs[i] = Open(context.Background(), tok.URI("object="+[]string{"snapshot", "timestamp"}[i%2]))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open %d: %v", i, err)
		}
		t.Cleanup(func() { keys[i].Close() })
	}
	if err := keys[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := keys[0].Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := keys[0].Signer.SignMessage(strings.NewReader("x")); err == nil {
		t.Error("a closed key still signs")
	}
	for _, k := range keys[1:] {
		checkSigns(t, k)
	}
}
