package hsm

import "context"

// The yubikey: backend (piv-go over PC/SC) is being built (issue 4). These
// entry points keep the dispatch in open.go stable while it lands.

func openYubiKey(_ context.Context, u URI, _ *options) (*Key, error) { return nil, unsupported(u) }

func generateYubiKey(_ context.Context, u URI, _ *options) (*Key, error) {
	return nil, unsupported(u)
}

func listYubiKeys(context.Context, *options) ([]Device, error) { return nil, nil }
