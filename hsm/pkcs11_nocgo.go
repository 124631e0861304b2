//go:build !cgo

package hsm

import (
	"context"
	"fmt"
)

// PKCS#11 modules are C libraries loaded with dlopen, which needs cgo. A
// build without it keeps every other backend and says how to get this one.

func openPKCS11(_ context.Context, u URI, _ *options) (*Key, error) { return nil, noCgo(u) }

func generatePKCS11(_ context.Context, u URI, _ *options) (*Key, error) { return nil, noCgo(u) }

func listPKCS11(_ context.Context, o *options) ([]Device, error) {
	if len(o.pkcs11Modules) > 0 {
		return nil, noCgo(URI{Scheme: SchemePKCS11, Query: map[string]string{"module-path": o.pkcs11Modules[0]}})
	}
	return nil, nil
}

func noCgo(u URI) error {
	if _, err := parsePKCS11(u); err != nil {
		return err
	}
	return fmt.Errorf("%s: pkcs11: keys are %w in this build: it was built with CGO_ENABLED=0, and loading a PKCS#11 module needs cgo; rebuild with CGO_ENABLED=1 and a C compiler", u, ErrNotSupported)
}
