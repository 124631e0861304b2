package main

import (
	"crypto/x509"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/urfave/cli/v2"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/safefile"
	"github.com/coldharbor/coldharbor/trust"
)

func keysCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "generate keys and show their public halves",
		Subcommands: []*cli.Command{
			keysGenerateCommand(e),
			keysPubCommand(e),
			simulateCommand(e),
			keysListCommand(e),
			keysAttestCommand(),
		},
	}
}

func keysGenerateCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Usage:     "make a new ECDSA P-256 key where URI says",
		ArgsUsage: "URI",
		Description: `Makes a new key and prints its TUF key ID and public key.

file:PATH writes PATH, encrypted in cosign's format (cosign sign --key PATH
works with it), and PATH.pub. The password comes from COLDHARBOR_PASSWORD or
COSIGN_PASSWORD, or is asked twice on a terminal.

yubikey:[serial=N;slot=9c] generates the key on the YubiKey (it never leaves
it), with --pin-policy and --touch-policy, and stores the key's attestation as
the slot's certificate. It refuses an occupied slot without --force. The PIN
comes from COLDHARBOR_PIN or a prompt.

pkcs11:token=T;object=O?module-path=M makes an EC P-256 key pair on the token.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "replace an existing key (the old one is lost)"},
			&cli.StringFlag{Name: "pin-policy", Usage: "YubiKey: when the PIN is needed, `POLICY` never, once or always", Value: "once"},
			&cli.StringFlag{Name: "touch-policy", Usage: "YubiKey: when a touch is needed, `POLICY` never, always or cached", Value: "always"},
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
			if err := checkNewKey(uri); err != nil {
				return err
			}
			k, err := hsm.Generate(c.Context, uri, hsm.WithSecrets(e.secrets()), hsm.WithForce(c.Bool("force")),
				hsm.WithPolicies(c.String("pin-policy"), c.String("touch-policy")))
			if err != nil {
				return err
			}
			defer k.Close()
			return printKey(c, k, asJSON)
		},
	}
}

func keysPubCommand(e env) *cli.Command {
	return &cli.Command{
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
			k, err := hsm.Open(c.Context, uri, publicOnly(uri, e)...)
			if err != nil {
				return err
			}
			defer k.Close()
			return printKey(c, k, asJSON)
		},
	}
}

func keysListCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the YubiKeys and PKCS#11 tokens present, with serials and the slots in use",
		Description: `Lists YubiKeys on this machine's PC/SC readers (pcscd must run) and the tokens
of each --pkcs11-module, with their serials, firmware and occupied key slots or
key objects, and the URI that names each.`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "pkcs11-module", Usage: "also list the tokens of the PKCS#11 module at `PATH` (repeat)"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error {
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			devs, err := hsm.List(c.Context, hsm.WithPKCS11Modules(c.StringSlice("pkcs11-module")...), hsm.WithSecrets(e.secrets()))
			if err != nil {
				return err
			}
			if asJSON {
				if devs == nil {
					devs = []hsm.Device{}
				}
				return writeJSON(c.App.Writer, map[string]any{"devices": devs})
			}
			if len(devs) == 0 {
				fmt.Fprintln(c.App.ErrWriter, "no YubiKey or token found (is pcscd running? give --pkcs11-module for HSMs)")
				return nil
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tSERIAL\tFIRMWARE\tSLOTS\tNAME\tURI")
			for _, d := range devs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Kind, d.Serial, d.Firmware, strings.Join(d.Slots, ","), d.Name, d.URI)
			}
			return tw.Flush()
		},
	}
}

func keysAttestCommand() *cli.Command {
	return &cli.Command{
		Name:      "attest",
		Usage:     "verify a hardware key's attestation chain; print serial, firmware, PIN and touch policy",
		ArgsUsage: "URI",
		Description: `Verifies that the key in a YubiKey slot was generated on that YubiKey: the
slot's attestation certificate must chain, through the device's attestation
certificate, to Yubico's PIV root (embedded in piv-go), or to --attestation-ca.
Prints the serial, firmware, PIN and touch policies. Needs no PIN. Exit 3 when
the chain does not verify.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "attestation-ca", Usage: "trust this CA certificate `FILE` (PEM) instead of Yubico's root (simulators, rehearsals)"},
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
			roots, err := attestationRoots(c.String("attestation-ca"))
			if err != nil {
				return err
			}
			k, err := hsm.Open(c.Context, uri)
			if err != nil {
				return err
			}
			defer k.Close()
			a, err := trust.Attest(k, roots)
			if trust.IsVerification(err) {
				return withHint(err, "was the key generated on this device? is --attestation-ca right?")
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(c.App.Writer, a)
			}
			fmt.Fprintf(c.App.Writer, "%s: generated on the device, attestation verified\n  serial %d, firmware %s, slot %s, PIN policy %s, touch policy %s, form factor %s\n",
				k.URI, a.Serial, a.Firmware, a.Slot, a.PINPolicy, a.TouchPolicy, a.FormFactor)
			return nil
		},
	}
}

// publicOnly opens what is needed to read a public key: hardware keys
// without a PIN, file keys with their password (the public half of an
// encrypted key file is inside it).
func publicOnly(uri string, e env) []hsm.Option {
	if u, err := hsm.ParseURI(uri); err == nil && u.Scheme == hsm.SchemeYubiKey {
		return nil
	}
	return []hsm.Option{hsm.WithSecrets(e.secrets())}
}

// maxCAFile bounds --attestation-ca: a few PEM certificates.
const maxCAFile = 1 << 20

// attestationRoots loads --attestation-ca; nil means the vendor's roots.
func attestationRoots(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := safefile.ReadFile(path, maxCAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// checkNewKey checks a URI to generate a key at: a file key's directory
// must exist before the password is asked for (twice).
func checkNewKey(uri string) error {
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return usagef("%v", err)
	}
	if u.Scheme == hsm.SchemeFile {
		return outputDir("key file", u.Path)
	}
	return nil
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
