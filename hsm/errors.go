package hsm

import (
	"errors"
	"fmt"
)

// The errors a caller may need to tell apart, for every backend and every
// build (with or without cgo). Messages say what happened; what to do next
// with coldharbor's own commands and flags is the CLI's hint, not ours.

// PINError is a wrong PIN, from a YubiKey or a PKCS#11 token. Retries is
// how many tries are left before the PIN is blocked, or -1 when the device
// does not say (PKCS#11 reports only "low" and "final try").
type PINError struct{ Retries int }

func (e *PINError) Error() string {
	if e.Retries < 0 {
		return "wrong PIN (too many wrong PINs block it)"
	}
	return fmt.Sprintf("wrong PIN (%d %s left before the PIN is blocked)", e.Retries, plural(e.Retries, "try", "tries"))
}

// ErrPINBlocked: no PIN tries are left. A YubiKey's PUK unblocks it (ykman
// piv access unblock-pin); a PKCS#11 token's security officer does.
var ErrPINBlocked = errors.New("PIN blocked after too many wrong PINs")

// ErrNoCard: no YubiKey is plugged in (or pcscd does not see it).
var ErrNoCard = errors.New("no YubiKey found")

// ErrKeyExists: generating a key would replace one that exists (a key
// file, a YubiKey slot, a PKCS#11 object) and replacing was not asked for.
var ErrKeyExists = errors.New("a key is already there")

// ErrNoKey: the place a URI names (a YubiKey slot) holds no key yet.
var ErrNoKey = errors.New("no key there")

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
