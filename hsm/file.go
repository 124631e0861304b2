package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/coldharbor/coldharbor/internal/atomicfile"
)

// maxKeyFile bounds what we read from a key file: a P-256 key in cosign's
// encrypted format is under 1 KiB, so anything near this is not a key.
const maxKeyFile = 64 << 10

// ErrWrongPassword is returned when an encrypted key does not decrypt.
var ErrWrongPassword = errors.New("wrong password")

// openFile loads a file: key. A PUBLIC KEY PEM yields a public-only Key; a
// private key (cosign's ENCRYPTED SIGSTORE/COSIGN PRIVATE KEY, or an
// unencrypted PKCS#8/SEC 1 PEM) asks for its password and yields a signer.
func openFile(ctx context.Context, u URI, secret SecretFunc) (*Key, error) {
	data, err := readBounded(u.Path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: not a PEM file (expected a cosign key or a public-key PEM)", u.Path)
	}
	key := &Key{URI: u, Close: func() error { return nil }}
	switch block.Type {
	case string(cryptoutils.PublicKeyPEMType):
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u.Path, err)
		}
		if err := CheckPublicKey(pub); err != nil {
			return nil, fmt.Errorf("%s: %w", u.Path, err)
		}
		key.Public = pub
		return key, nil
	case string(cryptoutils.EncryptedSigstorePrivateKeyPEMType), "ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		if secret == nil {
			return nil, fmt.Errorf("%s: %w: the key is encrypted and no password source is set", u.Path, ErrNoSecret)
		}
	case string(cryptoutils.PrivateKeyPEMType), string(cryptoutils.ECPrivateKeyPEMType):
		// Unencrypted keys are read (tests, migrations) but never written.
		secret = nil
	default:
		return nil, fmt.Errorf("%s: PEM type %q is neither a cosign private key nor a public key", u.Path, block.Type)
	}
	var pf cryptoutils.PassFunc
	if secret != nil {
		pf = func(bool) ([]byte, error) { return secret(ctx, SecretRequest{Kind: Password, Key: u}) }
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, pf)
	if err != nil {
		if errors.Is(err, ErrNoSecret) {
			return nil, err
		}
		// go-securesystemslib says "decryption failed" for a wrong password
		// and for a damaged file alike; the password is far more likely.
		return nil, fmt.Errorf("%s: %w or damaged key (%v)", u.Path, ErrWrongPassword, err)
	}
	cs, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %w (got %T)", u.Path, ErrUnsupportedKey, priv)
	}
	s, err := NewSigner(cs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.Path, err)
	}
	key.Signer, key.Public = s, s.Public()
	return key, nil
}

// generateFile writes a new P-256 key in cosign's encrypted format to
// u.Path and its public key to u.Path+".pub" (cosign writes cosign.key and
// cosign.pub; a coldharbor key loads in cosign and the reverse). Neither file
// may exist unless force is set. Both are written to temporary files and
// renamed, so a failure leaves no half-written key.
func generateFile(ctx context.Context, u URI, secret SecretFunc, force bool) (*Key, error) {
	pubPath := u.Path + ".pub"
	if !force {
		for _, p := range []string{u.Path, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%s: %w", p, ErrKeyExists)
			}
		}
	}
	if secret == nil {
		return nil, fmt.Errorf("%s: %w: a password is needed to encrypt a new key", u.Path, ErrNoSecret)
	}
	pw, err := secret(ctx, SecretRequest{Kind: Password, Key: u, Confirm: true})
	if err != nil {
		return nil, err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	enc, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(priv, cryptoutils.StaticPasswordFunc(pw))
	if err != nil {
		return nil, fmt.Errorf("encrypting key: %w", err)
	}
	privPEM := cryptoutils.PEMEncode(cryptoutils.EncryptedSigstorePrivateKeyPEMType, enc)
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	if err := atomicfile.Write(u.Path, privPEM, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(pubPath, pubPEM, 0o644); err != nil {
		return nil, err
	}
	s, err := NewSigner(priv)
	if err != nil {
		return nil, err
	}
	return &Key{URI: u, Public: priv.Public(), Signer: s, Close: func() error { return nil }}, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxKeyFile {
		return nil, fmt.Errorf("%s: %d bytes is too large for a key file (limit %d)", path, fi.Size(), maxKeyFile)
	}
	buf := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("reading key %s: %w", path, err)
	}
	return buf, nil
}
