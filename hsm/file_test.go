package hsm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func TestGenerateOpenRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "k.key")
	gen, err := Generate(ctx, "file:"+path, WithSecrets(StaticSecret("s3cret")))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if !bytes.HasPrefix(raw, []byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")) {
		t.Errorf("key is not in cosign's encrypted format:\n%s", raw)
	}

	k, err := Open(ctx, "file:"+path, WithSecrets(StaticSecret("s3cret")))
	if err != nil {
		t.Fatal(err)
	}
	if !k.Private() {
		t.Fatal("opened private key has no signer")
	}
	if err := cryptoutils.EqualKeys(gen.Public, k.Public); err != nil {
		t.Fatal(err)
	}
	msg := []byte("hello")
	sig, err := k.Signer.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := Open(ctx, path+".pub")
	if err != nil {
		t.Fatal(err)
	}
	if pub.Private() {
		t.Fatal("a .pub file yielded a signer")
	}
	if err := VerifySignature(pub.Public, msg, sig); err != nil {
		t.Fatalf("signature by the key does not verify with its .pub: %v", err)
	}
	if err := VerifySignature(pub.Public, []byte("other"), sig); err == nil {
		t.Fatal("signature verified over another message")
	}

	// Refuse to overwrite without force; replace with it.
	if _, err := Generate(ctx, "file:"+path, WithSecrets(StaticSecret("x"))); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("Generate over an existing key: %v", err)
	}
	if _, err := Generate(ctx, "file:"+path, WithSecrets(StaticSecret("x")), WithForce(true)); err != nil {
		t.Fatalf("Generate --force: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if _, err := Generate(ctx, "file:"+good, WithSecrets(StaticSecret("right"))); err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384PEM, _ := cryptoutils.MarshalPublicKeyToPEM(p384.Public())
	p384Priv, _ := cryptoutils.MarshalPrivateKeyToPEM(p384)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name   string
		uri    string
		secret SecretFunc
		is     error
		want   string
	}{
		{name: "wrong password", uri: good, secret: StaticSecret("wrong"), is: ErrWrongPassword},
		{name: "no secret source", uri: good, secret: nil, is: ErrNoSecret},
		{name: "missing file", uri: filepath.Join(dir, "nope.key"), is: os.ErrNotExist},
		{name: "not PEM", uri: write("junk.key", []byte("hello")), want: "not a PEM file"},
		{name: "P-384 public", uri: write("p384.pub", p384PEM), is: ErrUnsupportedKey},
		{name: "P-384 private", uri: write("p384.key", p384Priv), is: ErrUnsupportedKey},
		{name: "certificate", uri: write("c.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), want: "neither a cosign private key nor a public key"},
		{name: "too large", uri: write("big.key", make([]byte, maxKeyFile+1)), want: "too large"},
		{name: "directory", uri: dir, want: "not a regular file"},
		{name: "pkcs11 without module", uri: "pkcs11:token=x", want: "module-path"},
		{name: "unknown scheme", uri: "vault:x", want: "unknown key scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.secret != nil {
				opts = append(opts, WithSecrets(tt.secret))
			}
			_, err := Open(ctx, tt.uri, opts...)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v is not %v", err, tt.is)
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "right") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestOpenUnencryptedPKCS8(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	p := filepath.Join(t.TempDir(), "plain.key")
	os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	k, err := Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Private() {
		t.Fatal("no signer")
	}
}

// TestCosignLibraryFormat reads a key written by sigstore's own
// GeneratePEMEncodedECDSAKeyPair, the function `cosign generate-key-pair`
// calls, and checks a key we write decrypts with the function cosign loads
// keys with.
func TestCosignLibraryFormat(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc([]byte("pw")))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cosign.key"), privPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "cosign.pub"), pubPEM, 0o644)
	k, err := Open(ctx, "file:"+filepath.Join(dir, "cosign.key"), WithSecrets(StaticSecret("pw")))
	if err != nil {
		t.Fatalf("cosign-library key does not open: %v", err)
	}
	p, err := Open(ctx, filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cryptoutils.EqualKeys(k.Public, p.Public); err != nil {
		t.Fatal(err)
	}

	ours := filepath.Join(dir, "ours.key")
	if _, err := Generate(ctx, "file:"+ours, WithSecrets(StaticSecret("pw2"))); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(ours)
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, cryptoutils.StaticPasswordFunc([]byte("pw2")))
	if err != nil {
		t.Fatalf("cosign's loader refuses our key: %v", err)
	}
	if _, ok := priv.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("cosign's loader gave %T", priv)
	}
}
