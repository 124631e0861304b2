// Command coldharbor moves container images into isolated networks with
// end-to-end trust. This package holds the command line only: flags,
// prompts and output; the work is done in bundle, mirror, ceremony, trust
// and hsm.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/ceremony"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/mirror"
	"github.com/coldharbor/coldharbor/trust"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes (docs/design.md, section 6): scripts and cron jobs rely on them.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitRefused  = 3 // verification refused
	exitExpiring = 4 // status/refresh: a role expires within its warning window
)

// stopGrace is how long a command has to stop by itself after SIGINT or
// SIGTERM (its context is cancelled) before the process exits anyway: some
// waits (opening a FIFO, a read from a device) no context reaches. Exiting
// is safe at any point: publication is atomic and the lock is the kernel's.
const stopGrace = 5 * time.Second

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		cancel()
		select {
		case <-sigs: // a second signal: stop now
		case <-time.After(stopGrace):
		}
		fmt.Fprintf(os.Stderr, "coldharbor: stopped by %v before finishing; nothing half-published: run the same command again\n", s)
		code := 130 // 128 + SIGINT
		if s == syscall.SIGTERM {
			code = 143
		}
		os.Exit(code)
	}()
	code := run(ctx, os.Args, env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		getenv: os.LookupEnv,
	})
	signal.Stop(sigs)
	cancel()
	os.Exit(code)
}

// env is everything the command reads from its process, so tests can run it
// in-process.
type env struct {
	stdin          *os.File // nil: no terminal to prompt on
	stdout, stderr io.Writer
	getenv         func(string) (string, bool)
}

func (e env) secrets() hsm.SecretFunc { return hsm.EnvOrPrompt(e.getenv, e.stdin, e.stderr) }

// openKey opens a key URI with this process's secrets and notices.
func (e env) openKey(ctx context.Context, uri string) (*hsm.Key, error) {
	k, err := hsm.Open(ctx, uri, hsm.WithSecrets(e.secrets()), hsm.WithNotify(e.notify))
	// Unlocking a file key runs scrypt over 64 MiB: give that memory back
	// now, or the next unlock (import opens two keys) stacks another 64 MiB
	// on it before the collector runs, and the command's peak RSS doubles.
	debug.FreeOSMemory()
	return k, err
}

// openKeys opens several keys; closeAll releases every one opened, also
// when a later one fails.
func (e env) openKeys(ctx context.Context, uris []string) (keys []*hsm.Key, closeAll func(), err error) {
	closeAll = func() {
		for _, k := range keys {
			k.Close()
		}
	}
	for _, u := range uris {
		k, err := e.openKey(ctx, u)
		if err != nil {
			closeAll()
			return nil, func() {}, err
		}
		keys = append(keys, k)
	}
	return keys, closeAll, nil
}

// warnUnpinned says when a repository has no pinned root, so its
// metadata/1.root.json is trusted as found: the operator should compare its
// sha256 with the ceremony's paper record.
func (e env) warnUnpinned(dir string) {
	if trust.Exists(dir) && !trust.Pinned(dir) {
		fmt.Fprintf(e.stderr, "coldharbor: warning: %s has no pinned root (.coldharbor/ was not copied?): trusting metadata/1.root.json as found; compare its sha256 with the paper record\n", dir)
	}
}

// notify passes a hardware key's request (a touch) to the person at it.
func (e env) notify(msg string) { fmt.Fprintf(e.stderr, "coldharbor: %s\n", msg) }

func run(ctx context.Context, args []string, e env) int {
	app := newApp(e)
	err := app.RunContext(ctx, interspersed(app, args))
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	msg := err.Error()
	// One line: wrapped multi-line errors from libraries are folded.
	msg = printable(strings.Join(strings.Fields(msg), " "))
	fmt.Fprintf(e.stderr, "coldharbor: error: %s\n", msg)
	if h := hintFor(err); h != "" {
		fmt.Fprintf(e.stderr, "coldharbor: hint: %s\n", printable(h))
	}
	return code
}

// usageError is bad command-line input: exit 2.
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// expiringError: a role needs renewing soon: exit 4.
type expiringError struct{ msg string }

func (x *expiringError) Error() string { return x.msg }

// hinted carries a next step for the user.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() }
func (h *hinted) Unwrap() error { return h.err }

func withHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &hinted{err, hint}
}

func exitCode(err error) int {
	var (
		u *usageError
		x *expiringError
	)
	switch {
	case errors.As(err, &u):
		return exitUsage
	case trust.IsVerification(err):
		return exitRefused
	case errors.As(err, &x):
		return exitExpiring
	}
	return exitError
}

func hintFor(err error) string {
	var h *hinted
	if errors.As(err, &h) {
		return h.hint
	}
	if hint := libraryHint(err); hint != "" {
		return hint
	}
	var u *usageError
	switch {
	case errors.As(err, &u):
		return "run 'coldharbor help' or 'coldharbor COMMAND --help' for usage"
	case errors.Is(err, hsm.ErrWrongPassword):
		return "check COLDHARBOR_PASSWORD (or COSIGN_PASSWORD): it must be the password the key was generated with"
	case errors.Is(err, hsm.ErrNoSecret):
		return "export COLDHARBOR_PASSWORD (file keys) or COLDHARBOR_PIN (YubiKeys), or run in a terminal to be asked"
	case errors.As(err, new(*hsm.PINError)):
		return "check COLDHARBOR_PIN (or what you typed): every wrong PIN uses up a try"
	case errors.Is(err, os.ErrNotExist):
		return "check the path; keys are named by URI, e.g. file:root1.key"
	case bundle.IsFormatError(err):
		return "the file is not a well-formed coldharbor bundle or approval (damaged in transit, or hostile): nothing was changed"
	case trust.IsVerification(err):
		return "this does not verify against the trusted root: do not use it; the error says what failed"
	}
	return ""
}

// libraryHint is the next step for what the library says is missing: flag
// names live here, never in library errors.
func libraryHint(err error) string {
	for _, h := range []struct {
		err  error
		hint string
	}{
		{trust.ErrNotInitialised, "is this a coldharbor repository? create one with 'coldharbor ceremony init'"},
		{trust.ErrSnapshotKeyNeeded, "pass --snapshot-key: the snapshot must be re-signed before the new timestamp"},
		{mirror.ErrNoTrustedRoot, "pass --root root.json (check its sha256 against the ceremony's paper record)"},
		{mirror.ErrNoCache, "set --cache DIR"},
		{mirror.ErrOnlineKeys, "give --snapshot-key and --timestamp-key with their private keys"},
		{mirror.ErrOtherDestination, "pass --registry with the destination the bundle was exported for (the error names it), or export again for this registry"},
		{mirror.ErrNoBundleSignatures, "export again with --signature-format bundle or auto, or import with --signature-format legacy"},
		{export.ErrUpstreamNotCarried, "use --attachments signatures or all with --verify-upstream-key"},
		{export.ErrAttachments, "leave them out: --attachments signatures or none, or --attachment-type"},
		{export.ErrNothing, "give at least one image (or --remove, or --renew to only renew the targets' expiry)"},
		{mirror.ErrAbsent, "import the bundles that brought those images first, or export this one again without --since (a full bundle)"},
		{bundle.ErrLimit, "split the IMAGE arguments (or --images-from) over several bundles, or drop targets with 'export --remove NAME'"},
		{hsm.ErrPINBlocked, "unblock the PIN first: a YubiKey's with its PUK (ykman piv access unblock-pin), a PKCS#11 token's by its security officer"},
		{hsm.ErrNoCard, "plug the YubiKey in and check that pcscd runs; 'coldharbor keys list' shows what this machine sees"},
		{hsm.ErrKeyExists, "pass --force to replace it (the old key is lost for good)"},
		{hsm.ErrNoKey, "generate one first: coldharbor keys generate URI"},
		{hsm.ErrObjectNotFound, "'coldharbor keys list --pkcs11-module PATH' shows the keys of the module's tokens and the URI of each"},
		{hsm.ErrObjectAmbiguous, "'coldharbor keys list --pkcs11-module PATH' shows the keys of the module's tokens and the URI of each"},
		{hsm.ErrNotSupported, "use a file: key (coldharbor keys generate file:PATH), or a coldharbor built with cgo (make build)"},
		{hsm.ErrAttestation, "was the key generated on this device? with simulated keys pass --attestation-ca; to accept the key anyway pass --allow-unattested (recorded in the transcript)"},
		{ceremony.ErrRepositoryExists, "rotate its root with 'coldharbor ceremony rotate', or pass --force to start over (discarding this root of trust)"},
		{ceremony.ErrPending, "each missing holder runs 'coldharbor ceremony sign --repo DIR --key URI' ('coldharbor ceremony status' shows who is missing); 'ceremony init --force' starts over"},
	} {
		if errors.Is(err, h.err) {
			return h.hint
		}
	}
	return ""
}

func newApp(e env) *cli.App {
	app := &cli.App{
		Name:    "coldharbor",
		Usage:   "move container images into isolated networks with end-to-end trust",
		Version: version,
		Description: `coldharbor carries container images across an air gap. Export bundles images
on the connected side, sign approves them offline with keys on YubiKeys, and
import verifies and publishes them in the isolated network, with cosign
signatures and a TUF repository that any client can check.

Keys are named by URI: file:PATH (cosign's encrypted key format), yubikey:[serial=N;slot=9c]
or pkcs11:token=…;object=…?module-path=…. Secrets come from COLDHARBOR_PASSWORD
(or COSIGN_PASSWORD) and COLDHARBOR_PIN, or a prompt on a terminal.

Exit codes: 0 success, 1 error, 2 usage, 3 verification refused,
4 a role expires within its warning window.`,
		Reader:                    e.stdin,
		Writer:                    e.stdout,
		ErrWriter:                 e.stderr,
		DisableSliceFlagSeparator: true, // key URIs may contain commas
		Suggest:                   true,
		HideHelpCommand:           false,
		// We map errors to exit codes in run; urfave must not os.Exit.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usagef("%v", err)
		},
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Usage: "log progress and decisions to stderr"},
		},
		Before: func(c *cli.Context) error {
			level := slog.LevelWarn
			if c.Bool("verbose") {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})))
			return nil
		},
		Action: unknownCommand,
		// In the order of the job: keys and ceremony, then a bundle's way
		// from export to import, then what clients and cron jobs run.
		Commands: []*cli.Command{
			keysCommand(e),
			ceremonyCommand(e),
			exportCommand(e),
			inspectCommand(e),
			signCommand(e),
			importCommand(e),
			listCommand(e),
			verifyCommand(e),
			statusCommand(e),
			refreshCommand(e),
			serveCommand(e),
		},
	}
	setUsageErrors(app.Commands)
	return app
}

// unknownCommand replaces urfave's default (help, exiting 3 for an unknown
// topic, which would read as "verification refused").
func unknownCommand(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("unknown command %q", strings.Join(c.Args().Slice(), " "))
	}
	return cli.ShowAppHelp(c)
}

func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usagef("%v", err) }
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = func(c *cli.Context) error {
				if c.Args().Present() {
					return usagef("unknown command %q for %s", c.Args().First(), c.Command.FullName())
				}
				return cli.ShowSubcommandHelp(c)
			}
		}
		setUsageErrors(c.Subcommands)
	}
}

// logger is the CLI's logger (set up in Before from --verbose).
func logger() *slog.Logger { return slog.Default() }

// printable escapes what a terminal would act on — control characters
// (ESC, BEL, C1 codes such as CSI) and bytes that are not UTF-8 — as \xNN
// or \uNNNN: an error repeats file names and registry answers, and those
// must not clear a screen or retitle a window.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", r)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
