package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/coldharbor/coldharbor/ceremony"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

func ceremonyCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "ceremony",
		Usage: "create the root of trust with m-of-n key holders, and check its record (air-gapped machine)",
		Subcommands: []*cli.Command{
			ceremonyInitCommand(e),
			ceremonySignCommand(e),
			ceremonyRotateCommand(e),
			ceremonyVerifyCommand(),
			ceremonyStatusCommand(),
		},
	}
}

func ceremonyInitCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a new TUF repository: root v1 and the first targets, snapshot and timestamp",
		Description: `Creates the root of trust in --repo DIR: root v1 signed by every root key
given, an empty targets v1, and snapshot v1 and timestamp v1 when their
private keys are here (otherwise the isolated side signs them later).

Each key is a URI (file:PATH, yubikey:…, pkcs11:…) or a public-key PEM file for
a key held elsewhere. Root and targets need at least their threshold of
private keys present. Prints each key ID and the sha256 of root v1 for the
paper record, and appends every step to DIR/transcript.jsonl.

Hardware keys (YubiKeys) must prove they were generated on the device: each
key's attestation is verified against Yubico's PIV root (or --attestation-ca)
and recorded — serial, firmware, PIN and touch policy, certificates — in the
transcript. One that does not verify is refused unless --allow-unattested.

Refuses a threshold above the key count, a key given twice, an offline
(root/targets) key reused as an online (snapshot/timestamp) key, and an
existing repository unless --force.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "create the repository in `DIR`"},
			&cli.StringSliceFlag{Name: "root-key", Usage: "a root key `URI` (repeat for each holder)"},
			&cli.IntFlag{Name: "root-threshold", Usage: "root signatures required: `M` of the root keys", Value: 1},
			&cli.StringSliceFlag{Name: "targets-key", Usage: "a targets key `URI` (repeat); also the cosign signing key"},
			&cli.IntFlag{Name: "targets-threshold", Usage: "targets signatures required: `M` of the targets keys", Value: 1},
			&cli.StringFlag{Name: "snapshot-key", Usage: "the snapshot key `URI` or public-key PEM"},
			&cli.StringFlag{Name: "timestamp-key", Usage: "the timestamp key `URI` or public-key PEM"},
			&cli.StringFlag{Name: "root-expires", Usage: "root v1 is valid for `DURATION` (s, m, h, d)", Value: "365d"},
			&cli.StringFlag{Name: "targets-expires", Usage: "targets v1 is valid for `DURATION`", Value: "90d"},
			&cli.StringFlag{Name: "snapshot-expires", Usage: "snapshot v1 is valid for `DURATION`", Value: "7d"},
			&cli.StringFlag{Name: "timestamp-expires", Usage: "timestamp v1 is valid for `DURATION`", Value: "1d"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing repository in DIR (discards its root of trust)"},
			&cli.StringFlag{Name: "attestation-ca", Usage: "verify hardware keys' attestations against this CA `FILE` instead of Yubico's root (rehearsals with keys simulate)"},
			&cli.BoolFlag{Name: "allow-unattested", Usage: "accept a hardware key whose attestation does not verify (recorded in the transcript)"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error { return ceremonyInit(c, e) },
	}
}

func ceremonySignCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "sign",
		Usage: "add one holder's signatures to a pending ceremony; publishes once the thresholds hold",
		Description: `When fewer root or targets holders were present at 'ceremony init' than the
thresholds need (fewer card readers than holders, say), the ceremony waits in
DIR's private state. Each holder then runs this with their key: it signs the
roles the key belongs to (root, targets or both), records the step in the
transcript, and when both thresholds hold verifies and publishes the
repository. Without --key it finishes a ceremony whose publication was
interrupted after the last signature.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "the repository in `DIR`"},
			&cli.StringSliceFlag{Name: "key", Usage: "a holder's key `URI` (repeat for several)"},
			&cli.StringFlag{Name: "attestation-ca", Usage: "verify hardware keys' attestations against this CA `FILE` instead of Yubico's root"},
			&cli.BoolFlag{Name: "allow-unattested", Usage: "accept a hardware key whose attestation does not verify"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error { return ceremonySign(c, e) },
	}
}

func ceremonySign(c *cli.Context, e env) error {
	asJSON, err := repoCommand(c)
	if err != nil {
		return err
	}
	if err := inputDir("--repo", c.String("repo")); err != nil {
		return err
	}
	if err := checkKeyURIs(c.StringSlice("key")...); err != nil {
		return err
	}
	roots, err := attestationRoots(c.String("attestation-ca"))
	if err != nil {
		return err
	}
	keys, closeKeys, err := e.openKeys(c.Context, c.StringSlice("key"))
	if err != nil {
		return err
	}
	defer closeKeys()
	res, err := ceremony.Sign(c.Context, ceremony.SignOptions{Dir: c.String("repo"), Keys: keys, AttestationRoots: roots, AllowUnattested: c.Bool("allow-unattested")})
	if err != nil {
		return err
	}
	return printCeremony(c, res, asJSON)
}

func ceremonyRotateCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "rotate",
		Usage: "make the next root version: change the keys and thresholds of any role, renew its expiry",
		Description: `Makes root version N+1 in the signer's repository (--repo). Root keys:
--add-root-key, --remove-root-key, --root-threshold. Targets keys:
--targets-key (add), --targets-threshold. Online keys: --snapshot-key and
--timestamp-key replace that role's key (a public-key PEM when the private
key lives on the isolated side). --remove-key KEYID removes a key from every
role that names it. --root-expires sets the expiry (a rotation that changes
no key renews the root).

It must be signed (--key, repeat) by the current root's threshold of keys and
by the new root's own threshold, as every TUF client checks; a key in both
counts for both. When the targets keys or threshold change, the current
targets are re-signed in the same sitting by the new targets keys: give their
threshold with --key too. Everything is verified as a client would update to
it, published and pinned here, and recorded in the transcript.

The next approval (or an 'export --renew' bundle signed now) carries the new
root to the isolated side; its import verifies and publishes it and from then
on needs the new --snapshot-key and --timestamp-key there (the old ones are
refused, naming the rotation).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "the signer's repository in `DIR`"},
			&cli.StringSliceFlag{Name: "add-root-key", Usage: "a new root key `URI` (repeat)"},
			&cli.StringSliceFlag{Name: "remove-root-key", Usage: "remove the root key with this `KEYID` (repeat)"},
			&cli.IntFlag{Name: "root-threshold", Usage: "the new root threshold `M` (default: unchanged)"},
			&cli.StringSliceFlag{Name: "targets-key", Usage: "a new targets key `URI` (repeat)"},
			&cli.IntFlag{Name: "targets-threshold", Usage: "the new targets threshold `M` (default: unchanged)"},
			&cli.StringFlag{Name: "snapshot-key", Usage: "replace the snapshot key with this `URI` or public-key PEM"},
			&cli.StringFlag{Name: "timestamp-key", Usage: "replace the timestamp key with this `URI` or public-key PEM"},
			&cli.StringSliceFlag{Name: "remove-key", Usage: "remove the key with this `KEYID` from every role (repeat)"},
			&cli.StringFlag{Name: "root-expires", Usage: "the new root is valid for `DURATION`", Value: "365d"},
			&cli.StringFlag{Name: "targets-expires", Usage: "re-signed targets are valid for `DURATION`", Value: "90d"},
			&cli.StringSliceFlag{Name: "key", Usage: "a key `URI` that signs the new root or the re-signed targets (repeat)"},
			&cli.StringFlag{Name: "attestation-ca", Usage: "verify added hardware keys' attestations against this CA `FILE`"},
			&cli.BoolFlag{Name: "allow-unattested", Usage: "accept an added hardware key whose attestation does not verify"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error { return ceremonyRotate(c, e) },
	}
}

// parseRotateFlags checks every rotate flag before a key is opened.
func parseRotateFlags(c *cli.Context) (ceremony.RotateOptions, error) {
	o := ceremony.RotateOptions{Dir: c.String("repo"), RemoveRootKeys: c.StringSlice("remove-root-key"), RemoveKeys: c.StringSlice("remove-key"),
		RootThreshold: c.Int("root-threshold"), TargetsThreshold: c.Int("targets-threshold"), AllowUnattested: c.Bool("allow-unattested")}
	if len(c.StringSlice("key")) == 0 {
		return o, usagef("--key is required")
	}
	var err error
	if o.Expiry, err = trust.ParseDuration(c.String("root-expires")); err != nil {
		return o, usagef("--root-expires: %v", err)
	}
	if o.TargetsExpiry, err = trust.ParseDuration(c.String("targets-expires")); err != nil {
		return o, usagef("--targets-expires: %v", err)
	}
	if o.RootThreshold < 0 || o.TargetsThreshold < 0 {
		return o, usagef("--root-threshold and --targets-threshold must be 1 or more (0: unchanged)")
	}
	if err := inputDir("--repo", o.Dir); err != nil {
		return o, err
	}
	uris := append(append(c.StringSlice("add-root-key"), c.StringSlice("targets-key")...), c.StringSlice("key")...)
	for _, f := range []string{"snapshot-key", "timestamp-key"} {
		if u := c.String(f); u != "" {
			uris = append(uris, u)
		}
	}
	if err := checkKeyURIs(uris...); err != nil {
		return o, err
	}
	o.AttestationRoots, err = attestationRoots(c.String("attestation-ca"))
	return o, err
}

func ceremonyRotate(c *cli.Context, e env) error {
	asJSON, err := repoCommand(c)
	if err != nil {
		return err
	}
	o, err := parseRotateFlags(c)
	if err != nil {
		return err
	}
	// One Open per URI: a YubiKey added to a role that also signs is one
	// card, which piv-go opens exclusively. Added keys may be public only.
	kc := newKeyCache(c, e)
	defer kc.close()
	if o.AddRootKeys, err = kc.open(c.StringSlice("add-root-key")...); err != nil {
		return err
	}
	if o.AddTargetsKeys, err = kc.open(c.StringSlice("targets-key")...); err != nil {
		return err
	}
	for f, dst := range map[string]**hsm.Key{"snapshot-key": &o.SnapshotKey, "timestamp-key": &o.TimestampKey} {
		if u := c.String(f); u != "" {
			ks, err := kc.open(u)
			if err != nil {
				return err
			}
			*dst = ks[0]
		}
	}
	keys, err := kc.open(c.StringSlice("key")...)
	if err != nil {
		return err
	}
	o.Keys = keys
	res, err := ceremony.Rotate(c.Context, o)
	if trust.IsVerification(err) && !errors.Is(err, hsm.ErrAttestation) {
		return withHint(err, "give each holder's key with --key URI (repeat): the current root's threshold and the new root's must both sign, and the new targets keys' threshold when targets keys change")
	}
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(c.App.Writer, res)
	}
	printRotation(c, res)
	return nil
}

func printRotation(c *cli.Context, res *ceremony.RotateResult) {
	w := c.App.Writer
	fmt.Fprintf(w, "Root v%d: expires %s, signed by %d root key(s); changed: %s\n", res.Version, res.Expires, len(res.SignedBy), strings.Join(res.Changed, ", "))
	for _, r := range []string{trust.Root, trust.Targets, trust.Snapshot, trust.Timestamp} {
		rk := res.Roles[r]
		fmt.Fprintf(w, "%s (threshold %d of %d):\n", r, rk.Threshold, len(rk.KeyIDs))
		for _, id := range rk.KeyIDs {
			fmt.Fprintf(w, "  %s\n", id)
		}
	}
	fmt.Fprintf(w, "root v%d sha256: %s\n", res.Version, res.RootSHA256)
	if res.TargetsVersion > 0 {
		fmt.Fprintf(w, "targets v%d re-signed by %d new targets key(s), sha256: %s\n", res.TargetsVersion, len(res.TargetsSignedBy), res.TargetsSHA256)
	}
	fmt.Fprintf(w, "transcript sha256: %s\n(the next approval carries this root to the isolated side)\n", res.TranscriptHead)
}

func ceremonyVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "replay the transcript and the root chain; compare with the paper record",
		Description: `Replays DIR/transcript.jsonl: the hash chain of its lines, every recorded
public key against its key ID, every file recorded as published against the
file on disk (versioned metadata never changes), root v1's keys against the
recorded ones, and the root chain as a client walks it. Every sitting (init,
each holder's ceremony sign, each rotation) ends with a line signed by the keys
used in it over the hash of the record before it: each such signature is
checked against the keys the root named at that point, so an edited record,
even with its hash chain recomputed, or one re-signed by other keys, is
refused. Prints the transcript's last-line sha256 and root v1's sha256:
compare them with the paper record.

--format text prints the paper record itself: per sitting the date, the
holders' key IDs, YubiKey serials and firmware with their attestation results,
the root and targets versions published with their sha256, the hash after the
sitting, and the final hash to read aloud. Exit 3 on any mismatch.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "the repository in `DIR`"},
			&cli.StringFlag{Name: "format", Usage: "`FORMAT`: checks (what was verified) or text (the paper record)", Value: "checks"},
			outputFlag(),
		},
		Action: ceremonyVerify,
	}
}

func ceremonyVerify(c *cli.Context) error {
	asJSON, err := repoCommand(c)
	if err != nil {
		return err
	}
	format := c.String("format")
	if format != "checks" && format != "text" {
		return usagef("--format must be checks or text (got %q)", format)
	}
	rep, err := ceremony.Verify(c.Context, c.String("repo"))
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(c.App.Writer, rep)
	}
	if format == "text" {
		printPaperRecord(c, rep)
		return nil
	}
	w := c.App.Writer
	for _, ch := range rep.Checked {
		fmt.Fprintf(w, "ok  %s\n", ch)
	}
	fmt.Fprintf(w, "\ntranscript sha256: %s\nroot v1 sha256:    %s\n(compare both with the paper record)\n", rep.TranscriptHead, rep.RootSHA256)
	return nil
}

func ceremonyStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show who has signed a pending ceremony and who is missing",
		Description: `Shows, for a ceremony waiting for holders, each role's threshold, the keys
that have signed and the keys that may still sign.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "the repository in `DIR`"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error {
			asJSON, err := repoCommand(c)
			if err != nil {
				return err
			}
			res, err := ceremony.Status(c.String("repo"))
			if err != nil {
				return err
			}
			return printCeremony(c, res, asJSON)
		},
	}
}

// initFlags are ceremony init's flags, checked: nothing here has opened a
// key yet.
type initFlags struct {
	dir                    string
	rootKeys, targetsKeys  []string
	snapshotKey, timestamp string
	expiry                 trust.Expiry
	attestationRoots       *x509.CertPool
}

func parseInitFlags(c *cli.Context) (initFlags, error) {
	f := initFlags{dir: c.String("repo"), rootKeys: c.StringSlice("root-key"), targetsKeys: c.StringSlice("targets-key"),
		snapshotKey: c.String("snapshot-key"), timestamp: c.String("timestamp-key"), expiry: trust.Expiry{}}
	if err := noArgs(c); err != nil {
		return f, err
	}
	if f.dir == "" {
		return f, usagef("--repo DIR is required")
	}
	if len(f.rootKeys) == 0 || len(f.targetsKeys) == 0 {
		return f, usagef("--root-key and --targets-key are required (at least one each)")
	}
	if f.snapshotKey == "" || f.timestamp == "" {
		return f, usagef("--snapshot-key and --timestamp-key are required (a URI, or a public-key PEM for a key held on the isolated side)")
	}
	for _, r := range []string{trust.Root, trust.Targets, trust.Snapshot, trust.Timestamp} {
		d, err := trust.ParseDuration(c.String(r + "-expires"))
		if err != nil {
			return f, usagef("--%s-expires: %v", r, err)
		}
		f.expiry[r] = d
	}
	if err := checkKeyURIs(append(append(f.rootKeys, f.targetsKeys...), f.snapshotKey, f.timestamp)...); err != nil {
		return f, err
	}
	var err error
	f.attestationRoots, err = attestationRoots(c.String("attestation-ca"))
	return f, err
}

func ceremonyInit(c *cli.Context, e env) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	f, err := parseInitFlags(c)
	if err != nil {
		return err
	}
	keys := newKeyCache(c, e)
	defer keys.close()
	rootKeys, err := keys.open(f.rootKeys...)
	if err != nil {
		return err
	}
	targetsKeys, err := keys.open(f.targetsKeys...)
	if err != nil {
		return err
	}
	online, err := keys.open(f.snapshotKey, f.timestamp)
	if err != nil {
		return err
	}
	res, err := ceremony.Init(c.Context, ceremony.InitOptions{
		AttestationRoots: f.attestationRoots, AllowUnattested: c.Bool("allow-unattested"),
		Dir:              f.dir,
		RootKeys:         rootKeys,
		RootThreshold:    c.Int("root-threshold"),
		TargetsKeys:      targetsKeys,
		TargetsThreshold: c.Int("targets-threshold"),
		SnapshotKey:      online[0],
		TimestampKey:     online[1],
		Expiry:           f.expiry,
		Force:            c.Bool("force"),
		Tool:             "coldharbor " + version,
	})
	if err != nil {
		return err
	}
	return printCeremony(c, res, asJSON)
}

// keyCache opens each key URI once: a key given for two roles asks for its
// password or PIN once.
type keyCache struct {
	c      *cli.Context
	e      env
	opened map[string]*hsm.Key
	order  []*hsm.Key
}

func newKeyCache(c *cli.Context, e env) *keyCache {
	return &keyCache{c: c, e: e, opened: map[string]*hsm.Key{}}
}

func (kc *keyCache) open(uris ...string) ([]*hsm.Key, error) {
	var keys []*hsm.Key
	for _, u := range uris {
		k, ok := kc.opened[u]
		if !ok {
			var err error
			if k, err = kc.e.openKey(kc.c.Context, u); err != nil {
				return nil, err
			}
			kc.opened[u] = k
			kc.order = append(kc.order, k)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func (kc *keyCache) close() {
	for _, k := range kc.order {
		k.Close()
	}
}

// printCeremony shows a ceremony's result: the paper record when it is
// published, who is missing when it waits.
func printCeremony(c *cli.Context, res *ceremony.InitResult, asJSON bool) error {
	if asJSON {
		return writeJSON(c.App.Writer, res)
	}
	w := c.App.Writer
	if len(res.Missing) > 0 {
		fmt.Fprintf(w, "Ceremony pending in %s: nothing is published until these signatures are added\n", res.Dir)
		for _, r := range []string{trust.Root, trust.Targets} {
			m, ok := res.Missing[r]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "  %s needs %d more, from one of:\n", r, m.Needed)
			for _, id := range m.From {
				fmt.Fprintf(w, "    %s  %s\n", id, sourceOf(res, r, id))
			}
		}
		fmt.Fprintln(w, "Each holder runs: coldharbor ceremony sign --repo DIR --key URI")
		return nil
	}
	fmt.Fprintf(w, "Created TUF repository in %s\n\n", res.Dir)
	for _, r := range []string{trust.Root, trust.Targets, trust.Snapshot, trust.Timestamp} {
		rk := res.Roles[r]
		fmt.Fprintf(w, "%s (threshold %d of %d, signed by %d):\n", r, rk.Threshold, len(rk.KeyIDs), len(rk.SignedBy))
		for i, id := range rk.KeyIDs {
			fmt.Fprintf(w, "  %s  %s\n", id, rk.Sources[i])
			if a := rk.Attestations[id]; a != nil {
				fmt.Fprintf(w, "      attested: YubiKey serial %d, firmware %s, slot %s, PIN %s, touch %s\n", a.Serial, a.Firmware, a.Slot, a.PINPolicy, a.TouchPolicy)
			}
		}
	}
	fmt.Fprintf(w, "\nroot v1 sha256: %s\n", res.RootSHA256)
	fmt.Fprintf(w, "transcript sha256: %s\n", res.TranscriptHead)
	if len(res.Pending) > 0 {
		fmt.Fprintf(w, "\nnot yet signed (private keys not here): %s; the isolated side signs them on first import or refresh\n", strings.Join(res.Pending, ", "))
	}
	names := make([]string, 0, len(res.Files))
	for n := range res.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "\nfiles:")
	for _, n := range names {
		fmt.Fprintf(w, "  %s  %s\n", res.Files[n], n)
	}
	fmt.Fprintf(w, "\nWrite the root sha256 and key IDs on the paper record. Created %s.\n", time.Now().UTC().Format(time.RFC3339))
	return nil
}

func sourceOf(res *ceremony.InitResult, role, id string) string {
	rk := res.Roles[role]
	for i, k := range rk.KeyIDs {
		if k == id && i < len(rk.Sources) {
			return rk.Sources[i]
		}
	}
	return ""
}

// printPaperRecord prints what the holders write down, or compare with
// what they wrote down, one sitting after another.
func printPaperRecord(c *cli.Context, rep *ceremony.Report) {
	w := c.App.Writer
	fmt.Fprintf(w, "PAPER RECORD of %s (root v1 sha256 %s)\n", c.String("repo"), rep.RootSHA256)
	for i, s := range rep.Sittings {
		fmt.Fprintf(w, "\nSitting %d: %s, %s (transcript lines %d-%d)\n", i+1, s.Kind, s.Date.UTC().Format(time.RFC3339), s.Lines[0], s.Lines[1])
		if len(s.Holders) == 0 {
			fmt.Fprintln(w, "  signed by: no key (it published what an earlier sitting signed)")
		}
		for _, id := range s.Holders {
			fmt.Fprintf(w, "  signed by: %s\n", id)
		}
		for _, h := range s.Hardware {
			if h.Refused != "" {
				fmt.Fprintf(w, "  key %s (%s): attestation REFUSED: %s\n", h.KeyID, h.Role, h.Refused)
				continue
			}
			fmt.Fprintf(w, "  key %s (%s): YubiKey serial %d, firmware %s, attestation verified\n", h.KeyID, h.Role, h.Serial, h.Firmware)
		}
		names := make([]string, 0, len(s.Files))
		for n := range s.Files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "  published %s sha256 %s\n", n, s.Files[n])
		}
		fmt.Fprintf(w, "  record hash after this sitting: %s\n", s.Hash)
	}
	fmt.Fprintf(w, "\nFINAL HASH (read aloud): %s\n", rep.TranscriptHead)
}
