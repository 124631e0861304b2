package hsm

import "context"

// The pkcs11: backend (issue 5) is being built. These entry points keep the
// dispatch in open.go stable while it lands.

func openPKCS11(_ context.Context, u URI, _ *options) (*Key, error) { return nil, unsupported(u) }

func generatePKCS11(_ context.Context, u URI, _ *options) (*Key, error) {
	return nil, unsupported(u)
}

func listPKCS11(context.Context, *options) ([]Device, error) { return nil, nil }
