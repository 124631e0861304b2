package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/coldharbor/coldharbor/trust"
)

func statusCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show each role's version, expiry, threshold and keys; exit 4 when one needs renewing",
		Description: `Reads --repo DIR, verifies its root chain from the pinned root, and reports
for every role: version, expiry, threshold, key IDs, which keys signed, and a
state (ok, expiring, expired, missing, invalid).

Exit 0: all roles ok. Exit 4: a role expires within its warning window, has
expired or is not yet signed. Exit 3: signatures do not verify.
Default warning windows: root 30d, targets 30d, snapshot 1d, timestamp 6h;
--warn sets one window for every role.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "the repository in `DIR`"},
			&cli.StringFlag{Name: "warn", Usage: "warn when any role expires within `DURATION` (e.g. 90d); default per role"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error {
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			dir := c.String("repo")
			if dir == "" {
				return usagef("--repo DIR is required")
			}
			warn, err := warnWindows(c)
			if err != nil {
				return err
			}
			e.warnUnpinned(dir)
			now := time.Now()
			roles, err := trust.Status(c.Context, dir, now, warn)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(c.App.Writer, map[string]any{"repo": dir, "time": now.UTC().Truncate(time.Second), "roles": roles}); err != nil {
					return err
				}
			} else {
				printStatus(c, roles, now)
			}
			return statusVerdict(roles)
		},
	}
}

func printStatus(c *cli.Context, roles []trust.RoleStatus, now time.Time) {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tVERSION\tEXPIRES\tIN\tTHRESHOLD\tSIGNED\tSTATE")
	for _, r := range roles {
		exp, in := "-", "-"
		if !r.Expires.IsZero() {
			exp = r.Expires.UTC().Format(time.RFC3339)
			if d := r.Expires.Sub(now); d > 0 {
				in = trust.FormatDuration(d.Truncate(time.Minute))
			} else {
				in = "expired"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d of %d\t%d\t%s\n", r.Role, r.Version, exp, in, r.Threshold, len(r.KeyIDs), len(r.SignedBy), r.State)
	}
	tw.Flush()
	fmt.Fprintln(c.App.Writer)
	for _, r := range roles {
		fmt.Fprintf(c.App.Writer, "%s keys: %s\n", r.Role, strings.Join(r.KeyIDs, ", "))
		if r.Problem != "" {
			fmt.Fprintf(c.App.Writer, "  problem: %s\n", r.Problem)
		}
	}
}

// statusVerdict turns the report into the exit code scripts rely on.
func statusVerdict(roles []trust.RoleStatus) error {
	if err := trust.CheckRoles(roles); err != nil {
		return err
	}
	var attention []string
	for _, r := range roles {
		switch r.State {
		case trust.StateExpired:
			attention = append(attention, fmt.Sprintf("%s v%d expired %s", r.Role, r.Version, r.Expires.UTC().Format(time.RFC3339)))
		case trust.StateExpiring:
			attention = append(attention, fmt.Sprintf("%s v%d expires %s (within %s)", r.Role, r.Version, r.Expires.UTC().Format(time.RFC3339), r.WarnWithin))
		case trust.StateMissing:
			attention = append(attention, r.Role+" is not yet signed")
		}
	}
	if len(attention) > 0 {
		return withHint(&expiringError{strings.Join(attention, "; ")}, "renew the named roles: offline roles (root, targets) at a signing ceremony, online ones with 'coldharbor refresh'")
	}
	return nil
}
