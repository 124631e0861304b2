package hsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// ErrNoSecret is returned when a secret is needed, no variable holds it and
// there is no terminal to ask on.
var ErrNoSecret = errors.New("no secret available")

// EnvOrPrompt returns a SecretFunc that reads COLDHARBOR_PASSWORD, then
// COSIGN_PASSWORD (passwords) or COLDHARBOR_PIN (PINs) through getenv, and
// otherwise prompts without echo on tty. It never prompts when tty is nil or
// not a terminal: cron jobs and CI fail with the name of the variable to set.
// A variable that is set but empty is an empty password, as cosign reads it.
func EnvOrPrompt(getenv func(string) (string, bool), tty *os.File, out io.Writer) SecretFunc {
	return func(ctx context.Context, req SecretRequest) ([]byte, error) {
		// Read in this order; cosign's variable comes second so that a key
		// shared with cosign needs no second setting.
		names, what := []string{"COLDHARBOR_PASSWORD", "COSIGN_PASSWORD"}, "password"
		if req.Kind == PIN {
			names, what = []string{"COLDHARBOR_PIN"}, "PIN"
		}
		for _, n := range names {
			if v, ok := getenv(n); ok {
				return []byte(v), nil
			}
		}
		if tty == nil || !term.IsTerminal(int(tty.Fd())) {
			return nil, fmt.Errorf("%w: %s for %s is needed; set %s (no terminal to prompt on)", ErrNoSecret, what, req.Key, names[0])
		}
		first, err := readHidden(tty, out, fmt.Sprintf("Enter %s for %s: ", what, req.Key))
		if err != nil {
			return nil, err
		}
		if req.Confirm {
			again, err := readHidden(tty, out, fmt.Sprintf("Enter %s again: ", what))
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(first, again) {
				return nil, fmt.Errorf("the two %ss differ", what)
			}
		}
		return first, nil
	}
}

func readHidden(tty *os.File, out io.Writer, prompt string) ([]byte, error) {
	fmt.Fprint(out, prompt)
	b, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(out)
	if err != nil {
		return nil, fmt.Errorf("reading from terminal: %w", err)
	}
	return b, nil
}

// StaticSecret returns the same secret for every request (tests, scripts).
func StaticSecret(s string) SecretFunc {
	return func(context.Context, SecretRequest) ([]byte, error) { return []byte(s), nil }
}
