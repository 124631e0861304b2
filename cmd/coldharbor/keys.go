package main

import (
	"fmt"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/urfave/cli/v2"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

func keysCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "generate keys and show their public halves",
		Subcommands: []*cli.Command{
			{
				Name:      "generate",
				Usage:     "make a new ECDSA P-256 key where URI says",
				ArgsUsage: "URI",
				Description: `Makes a new key and prints its TUF key ID and public key.

file:PATH writes PATH, encrypted in cosign's format (cosign sign --key PATH
works with it), and PATH.pub. The password comes from COLDHARBOR_PASSWORD or
COSIGN_PASSWORD, or is asked twice on a terminal.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "force", Usage: "replace an existing key (the old one is lost)"},
					outputFlag(),
				},
				Action: func(c *cli.Context) error {
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					uri, err := oneArg(c, "URI")
					if err != nil {
						return err
					}
					k, err := hsm.Generate(c.Context, uri, hsm.WithSecrets(e.secrets()), hsm.WithForce(c.Bool("force")))
					if err != nil {
						return err
					}
					defer k.Close()
					return printKey(c, k, asJSON)
				},
			},
			{
				Name:      "pub",
				Usage:     "print a key's public key (PEM) and TUF key ID",
				ArgsUsage: "URI",
				Description: `Prints the public key PEM on stdout; its TUF key ID goes to stderr (or
into the JSON with --output json). For an encrypted file key the password is
needed; for a .pub file it is not.`,
				Flags: []cli.Flag{outputFlag()},
				Action: func(c *cli.Context) error {
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					uri, err := oneArg(c, "URI")
					if err != nil {
						return err
					}
					k, err := hsm.Open(c.Context, uri, hsm.WithSecrets(e.secrets()))
					if err != nil {
						return err
					}
					defer k.Close()
					return printKey(c, k, asJSON)
				},
			},
		},
	}
}

type keyInfo struct {
	URI       string `json:"uri"`
	KeyID     string `json:"keyid"`
	PublicKey string `json:"public_key"`
}

func printKey(c *cli.Context, k *hsm.Key, asJSON bool) error {
	id, err := trust.KeyID(k.Public)
	if err != nil {
		return err
	}
	pemPub, err := cryptoutils.MarshalPublicKeyToPEM(k.Public)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(c.App.Writer, keyInfo{URI: k.URI.String(), KeyID: id, PublicKey: string(pemPub)})
	}
	fmt.Fprintf(c.App.ErrWriter, "key ID %s (%s)\n", id, k.URI)
	_, err = c.App.Writer.Write(pemPub)
	return err
}

func oneArg(c *cli.Context, name string) (string, error) {
	if c.NArg() != 1 {
		return "", usagef("%s takes exactly one %s (got %d arguments)", c.Command.FullName(), name, c.NArg())
	}
	return c.Args().First(), nil
}
