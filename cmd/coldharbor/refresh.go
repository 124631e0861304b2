package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

func refreshCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "refresh",
		Usage: "re-sign the timestamp (and snapshot when due) with the online keys; warn before any role expires",
		Description: `For cron or a Kubernetes CronJob, e.g. hourly. Takes the repository's lock (two
runs never interleave), verifies the repository as a client would (exit 3 if it
does not), and when the timestamp expires within --if-expiring-within (or
--force) signs timestamp+1 — and snapshot+1 when the snapshot would expire
before the new timestamp — verifies the result and publishes it atomically.
Versions never go backwards. Nothing due: exit 0 and nothing written.

Then reports every role, one line each, and exits 4 when root or targets
expire within the warning window (--warn, as for status), naming the role and
the date: only a person at a signing ceremony can renew those.

With --out FILE, for sites with no online key: run on the signer's side, it
records the new versions in --repo and writes a small refresh bundle that
'coldharbor import FILE --repo DIR' verifies and publishes on the isolated side.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "the TUF repository in `DIR`"},
			&cli.StringFlag{Name: "timestamp-key", Usage: "the timestamp key `URI`"},
			&cli.StringFlag{Name: "snapshot-key", Usage: "the snapshot key `URI` (needed when the snapshot is due)"},
			&cli.StringFlag{Name: "timestamp-expiry", Usage: "the new timestamp is valid for `DURATION`", Value: "24h"},
			&cli.StringFlag{Name: "snapshot-expiry", Usage: "a new snapshot is valid for `DURATION`", Value: "7d"},
			&cli.StringFlag{Name: "if-expiring-within", Usage: "refresh only when the timestamp expires within `DURATION`", Value: "6h"},
			&cli.BoolFlag{Name: "force", Usage: "refresh the timestamp even when it is not due"},
			&cli.StringFlag{Name: "warn", Usage: "warn (exit 4) when root or targets expire within `DURATION`; default 30d"},
			&cli.StringFlag{Name: "out", Usage: "write a refresh bundle to `FILE` (sites with no online key)"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error { return refresh(c, e) },
	}
}

func refresh(c *cli.Context, e env) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	dir := c.String("repo")
	if dir == "" || c.String("timestamp-key") == "" {
		return usagef("--repo and --timestamp-key are required")
	}
	durs := map[string]time.Duration{}
	for _, f := range []string{"timestamp-expiry", "snapshot-expiry", "if-expiring-within"} {
		d, err := trust.ParseDuration(c.String(f))
		if err != nil {
			return usagef("--%s: %v", f, err)
		}
		durs[f] = d
	}
	warn, err := warnWindows(c)
	if err != nil {
		return err
	}
	if err := checkRefreshInputs(c); err != nil {
		return err
	}
	ts, err := e.openKey(c.Context, c.String("timestamp-key"))
	if err != nil {
		return err
	}
	defer ts.Close()
	if !ts.Private() {
		return fmt.Errorf("%s: only a public key is here: refresh signs with the timestamp key", ts.URI)
	}
	var snap hsm.Signer
	if u := c.String("snapshot-key"); u != "" {
		k, err := e.openKey(c.Context, u)
		if err != nil {
			return err
		}
		defer k.Close()
		snap = k.Signer
	}
	e.warnUnpinned(dir)
	opts := trust.RefreshOptions{Timestamp: ts.Signer, Snapshot: snap,
		TimestampExpiry: durs["timestamp-expiry"], SnapshotExpiry: durs["snapshot-expiry"], IfExpiringWithin: durs["if-expiring-within"],
		Force: c.Bool("force"), Publish: true}
	if out := c.String("out"); out != "" {
		opts.Deliver = func(res *trust.RefreshResult, publish func() error) error {
			return writeRefreshBundle(out, res, publish)
		}
	}
	res, err := trust.Refresh(c.Context, dir, opts)
	if err != nil {
		return err
	}
	return reportRefresh(c, dir, res, warn, asJSON)
}

// checkRefreshInputs checks refresh's arguments, paths and key URIs before
// any key is opened.
func checkRefreshInputs(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if err := inputDir("--repo", c.String("repo")); err != nil {
		return err
	}
	uris := []string{c.String("timestamp-key")}
	if u := c.String("snapshot-key"); u != "" {
		uris = append(uris, u)
	}
	if err := checkKeyURIs(uris...); err != nil {
		return err
	}
	if out := c.String("out"); out != "" {
		return outputDir("--out", out)
	}
	return nil
}

// writeRefreshBundle writes res as a refresh bundle to out, publishing it
// into the local repository before the file appears, so that the next
// refresh bundle is newer.
func writeRefreshBundle(out string, res *trust.RefreshResult, publish func() error) error {
	var snapBytes []byte
	if res.Snapshot != nil {
		var err error
		if snapBytes, err = res.Snapshot.ToBytes(true); err != nil {
			return err
		}
	}
	tsBytes, err := res.Timestamp.ToBytes(true)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := bundle.WriteRefreshRoots(&buf, "coldharbor "+version, time.Now(), res.Roots, snapBytes, tsBytes); err != nil {
		return err
	}
	return writeFileAtomic(out, func(f *os.File) error {
		if _, err := f.Write(buf.Bytes()); err != nil {
			return err
		}
		return publish()
	})
}

// reportRefresh prints one line per role and turns offline-role expiry into
// exit 4.
func reportRefresh(c *cli.Context, dir string, res *trust.RefreshResult, warn trust.Expiry, asJSON bool) error {
	roles, err := trust.Status(c.Context, dir, time.Now(), warn)
	if err != nil {
		return err
	}
	var attention []string
	for _, r := range roles {
		if (r.Role == trust.Root || r.Role == trust.Targets) && r.NeedsAttention() {
			attention = append(attention, fmt.Sprintf("%s v%d %s %s", r.Role, r.Version, map[bool]string{true: "expired", false: "expires"}[r.State == trust.StateExpired], r.Expires.UTC().Format(time.RFC3339)))
		}
	}
	if asJSON {
		if err := writeJSON(c.App.Writer, map[string]any{"refresh": res, "roles": roles, "attention": attention}); err != nil {
			return err
		}
	} else {
		w := c.App.Writer
		if res.Refreshed {
			fmt.Fprintf(w, "refreshed: %s\n", res.Reason)
		} else {
			fmt.Fprintf(w, "%s\n", res.Reason)
		}
		for _, r := range roles {
			exp := "-"
			if !r.Expires.IsZero() {
				exp = r.Expires.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%-9s v%-4d expires %s  %s\n", r.Role, r.Version, exp, r.State)
		}
	}
	if len(attention) > 0 {
		return withHint(&expiringError{strings.Join(attention, "; ")}, "root and targets are renewed offline: hold a signing ceremony (sign a bundle, or rotate the root) before they expire")
	}
	return nil
}

func warnWindows(c *cli.Context) (trust.Expiry, error) {
	warn := trust.DefaultWarn()
	if s := c.String("warn"); s != "" {
		d, err := trust.ParseDuration(s)
		if err != nil {
			return nil, usagef("--warn: %v", err)
		}
		for r := range warn {
			warn[r] = d
		}
	}
	return warn, nil
}

// importRefresh applies a refresh bundle: `coldharbor import refresh.tar --repo DIR`.
func importRefresh(c *cli.Context, path string, asJSON bool) error {
	dir := c.String("repo")
	if dir == "" {
		return usagef("--repo is required")
	}
	rf, err := bundle.OpenRefresh(path)
	if err != nil {
		return err
	}
	res, err := trust.ApplyRefreshRoots(c.Context, dir, rf.Roots, rf.Timestamp, rf.Snapshot, time.Now())
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(c.App.Writer, res)
	}
	fmt.Fprintf(c.App.Writer, "Published timestamp v%d (expires %s) and snapshot v%d from %s\n", res.TimestampV, res.TimestampEx.UTC().Format(time.RFC3339), res.SnapshotV, path)
	return nil
}
