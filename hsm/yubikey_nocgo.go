//go:build !cgo

package hsm

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
)

// piv-go needs cgo (it links libpcsclite): a build without it keeps every
// other backend and says how to get this one.
var errNoCgo = errors.New("this coldharbor was built without cgo, so it cannot talk to YubiKeys: rebuild with CGO_ENABLED=1 and libpcsclite-dev installed (make build does)")

func openYubiKey(context.Context, URI, *options) (*Key, error)     { return nil, errNoCgo }
func generateYubiKey(context.Context, URI, *options) (*Key, error) { return nil, errNoCgo }
func listYubiKeys(context.Context, *options) ([]Device, error)     { return nil, nil }

// VerifyRecorded needs piv-go's attestation verifier: without cgo it
// refuses (fail closed) and says how to get it.
func VerifyRecorded(*Attestation, crypto.PublicKey, *x509.CertPool) error { return errNoCgo }
