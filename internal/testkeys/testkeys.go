// Package testkeys makes in-memory P-256 keys for tests, so that tests of
// TUF logic do not pay for scrypt on every key (file keys have tests of
// their own in hsm).
package testkeys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/coldharbor/coldharbor/hsm"
)

// New returns a key that can sign, named file:NAME in messages.
func New(t testing.TB, name string) *hsm.Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := hsm.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := hsm.ParseURI("file:" + name)
	return &hsm.Key{URI: u, Public: priv.Public(), Signer: s, Close: func() error { return nil }}
}

// PublicOnly returns k without its private half, as a .pub file would give it.
func PublicOnly(k *hsm.Key) *hsm.Key {
	u, _ := hsm.ParseURI(k.URI.Path + ".pub")
	return &hsm.Key{URI: u, Public: k.Public, Close: func() error { return nil }}
}
