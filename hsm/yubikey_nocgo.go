//go:build !cgo

package hsm

import (
	"context"
	"errors"
	"fmt"
)

// piv-go needs cgo (it links libpcsclite): a build without it keeps every
// other backend and says how to get this one.
var errNoCgo = errors.New("this coldharbor was built without cgo, so it cannot talk to YubiKeys: rebuild with CGO_ENABLED=1 and libpcsclite-dev installed (make build does)")

// PINError is a wrong PIN; Retries is how many tries are left.
type PINError struct{ Retries int }

func (e *PINError) Error() string { return fmt.Sprintf("wrong PIN (%d tries left)", e.Retries) }

// ErrPINBlocked: no PIN tries are left.
var ErrPINBlocked = errors.New("the YubiKey's PIN is blocked: unblock it with the PUK before signing")

// ErrNoCard: no YubiKey is plugged in.
var ErrNoCard = errors.New("no YubiKey found")

func openYubiKey(context.Context, URI, *options) (*Key, error)     { return nil, errNoCgo }
func generateYubiKey(context.Context, URI, *options) (*Key, error) { return nil, errNoCgo }
func listYubiKeys(context.Context, *options) ([]Device, error)     { return nil, nil }
