package main

import (
	"encoding/pem"
	"fmt"
	"log/slog"
	"math"

	"github.com/urfave/cli/v2"

	"github.com/coldharbor/coldharbor/hsm/pivsim"
	"github.com/coldharbor/coldharbor/internal/atomicfile"
)

// simulateCommand is `keys simulate`: the only part of the command that
// may import hsm/pivsim (depcheck_test.go), so no signing path reaches it.
func simulateCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "simulate",
		Usage: "run a software YubiKey on the local pcscd (tests, ceremony rehearsals)",
		Description: `Plugs a simulated YubiKey 5 (PIV, firmware 5.7.4) into the local pcscd through
its vsmartcard-vpcd driver (Debian: pcscd, vsmartcard-vpcd), where every PIV
tool sees it as a card in reader "Virtual PCD 00 00" (--reader 1: "… 00 01").
It serves until interrupted (Ctrl-C), then unplugs.

--state FILE keeps the card: serial, PIN, PUK, management key and the private
keys, in the clear. A missing FILE makes a factory-fresh card (PIN 123456, PUK
12345678, the default management key) with its own attestation CA; run again
with the same FILE to plug the same card back in.

Its attestations chain to that CA, not to Yubico's: write it out with
--attestation-ca FILE and give it to 'keys attest --attestation-ca'. Touch
policies are simulated: each touch is granted and logged.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "state", Usage: "keep the card in `FILE` (made if missing; holds private keys)"},
			&cli.IntFlag{Name: "reader", Value: 0, Usage: "plug into vpcd reader `N`: 0 or 1"},
			&cli.Uint64Flag{Name: "serial", Usage: "serial `NUMBER` of a new card (default: random; must match an existing FILE)"},
			&cli.StringFlag{Name: "attestation-ca", Usage: "write the card's attestation CA certificate (PEM) to `FILE`"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("%s takes no arguments (got %d)", c.Command.FullName(), c.NArg())
			}
			statePath := c.String("state")
			if statePath == "" {
				return usagef("--state FILE is required")
			}
			reader := c.Int("reader")
			if reader != 0 && reader != 1 {
				return usagef("--reader must be 0 or 1, not %d", reader)
			}
			level := slog.LevelInfo
			if c.Bool("verbose") {
				level = slog.LevelDebug
			}
			opts := []pivsim.Option{
				pivsim.WithLogger(slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))),
			}
			if c.IsSet("serial") {
				n := c.Uint64("serial")
				if n == 0 || n > math.MaxUint32 {
					return usagef("--serial must be between 1 and %d", uint32(math.MaxUint32))
				}
				opts = append(opts, pivsim.WithSerial(uint32(n)))
			}
			name := pivsim.ReaderName(reader)
			opts = append(opts, pivsim.WithNotify(func(addr string, plugged bool) {
				if plugged {
					fmt.Fprintf(e.stdout, "plugged into reader %q (vpcd at %s); Ctrl-C unplugs it\n", name, addr)
				} else {
					fmt.Fprintf(e.stdout, "unplugged from reader %q\n", name)
				}
			}))

			card, err := pivsim.Open(statePath, opts...)
			if err != nil {
				return err
			}
			defer card.Close()
			if out := c.String("attestation-ca"); out != "" {
				b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: card.AttestationCA().Raw})
				if err := atomicfile.Write(out, b, 0o644); err != nil {
					return fmt.Errorf("writing the attestation CA: %w", err)
				}
			}
			fmt.Fprintf(e.stdout, "simulated YubiKey serial %d (firmware 5.7.4), state %s, reader %q\n", card.Serial(), statePath, name)
			return card.Serve(c.Context, pivsim.ReaderAddr(reader))
		},
	}
}
