package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/bundle/export"
	"github.com/coldharbor/coldharbor/ceremony"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/atomicfile"
	"github.com/coldharbor/coldharbor/mirror"
)

func exportCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "bundle images for the isolated network (connected side)",
		ArgsUsage: "IMAGE...",
		Description: `Resolves each IMAGE to a digest and writes one bundle tar: the images as an
OCI layout (each blob once, however many images share it), their digests, the
pending TUF targets (the repository's targets plus these images) and one cosign
payload per image naming its repository under --dest.

IMAGE is SRC (keeps its repository path and tag: docker.io/library/alpine:3.20
becomes library/alpine:3.20) or SRC=REPOSITORY:TAG to rename. Multi-arch
indexes are kept whole unless --platform picks one. Registry credentials come
from the Docker config (DOCKER_CONFIG); custom CAs from SSL_CERT_FILE.

What the source attaches to each manifest of an image (cosign's .sig, .att and
.sbom tags, and OCI 1.1 referrers such as cosign v3 signatures, SBOMs and
provenance) comes along, listed against its subject and signed with the
image's target: the importer refuses a bundle that lacks or alters one.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "a copy of the published TUF repository in `DIR`"},
			&cli.StringFlag{Name: "dest", Usage: "the target registry, `HOST[/PREFIX]`, as the isolated side will push to it"},
			&cli.StringFlag{Name: "output-file", Aliases: []string{"o"}, Usage: "write the bundle to `FILE`"},
			&cli.StringFlag{Name: "images-from", Usage: "read more IMAGE arguments from `FILE`, one per line (# comments)"},
			&cli.StringFlag{Name: "platform", Usage: "keep only `OS/ARCH[/VARIANT]` of multi-arch images"},
			&cli.StringSliceFlag{Name: "remove", Usage: "propose removing target `REPOSITORY:TAG` (repeat)"},
			&cli.IntFlag{Name: "jobs", Usage: "fetch `N` blobs at once (at most N wait on disk beside the bundle)", Value: 4},
			&cli.StringFlag{Name: "attachments", Value: "all", Usage: "what the source attaches to each image that comes along: `all` (cosign signatures, attestations, SBOMs and every OCI 1.1 referrer), signatures, or none"},
			&cli.StringSliceFlag{Name: "attachment-type", Usage: "keep only attachments of artifact (or config, or layer) media type `MEDIATYPE` (repeat)"},
			&cli.StringFlag{Name: "signature-format", Value: bundle.SigAuto, Usage: "the formats the signer signs each digest for: `legacy` (cosign .sig payloads only), bundle or auto (both: cosign payloads and the in-toto statements of sigstore bundles, so import's --signature-format can pick per target)"},
			&cli.StringSliceFlag{Name: "verify-upstream-key", Usage: "refuse an image unless its vendor's cosign signature (legacy .sig or v3 sigstore bundle) verifies with this public `KEY` (a PEM file or PEM text; repeat: any one will do)"},
			&cli.BoolFlag{Name: "renew", Usage: "with no IMAGE: a bundle that only renews the targets' expiry when signed and imported"},
			&cli.StringFlag{Name: "since", Usage: "a differential bundle: leave out every blob that images published in `DIR` (your copy of the isolated side's published TUF repository) hold; import checks the registry has them before it pushes anything"},
			&cli.StringFlag{Name: "split", Usage: "cut the bundle into FILE.000, FILE.001, … of at most `SIZE` bytes each (K, M, G suffixes; 4G is FAT32's largest file, 4 GiB less one byte); sign needs only FILE.000, import and inspect take FILE.000 and find the rest beside it"},
			networkFlags(24 * time.Hour)[0], networkFlags(24 * time.Hour)[1],
			outputFlag(),
		},
		Action: func(c *cli.Context) error { return exportAction(c, e) },
	}
}

// exportFlags are export's flags and arguments, checked.
type exportFlags struct {
	asJSON   bool
	specs    []export.ImageSpec
	platform *v1.Platform
	upstream []export.UpstreamKey
	split    int64 // part size; 0: one file
}

func parseExportFlags(c *cli.Context) (exportFlags, error) {
	var f exportFlags
	var err error
	if f.asJSON, err = jsonOutput(c); err != nil {
		return f, err
	}
	for _, name := range []string{"repo", "dest", "output-file"} {
		if c.String(name) == "" {
			return f, usagef("--%s is required", name)
		}
	}
	if err := bundle.ValidDestination(c.String("dest")); err != nil {
		return f, usagef("--dest: %v", err)
	}
	if err := export.ValidAttachments(c.String("attachments")); err != nil {
		return f, usagef("%v", err)
	}
	if f.split, err = parseSize(c.String("split")); err != nil {
		return f, usagef("--split: %v", err)
	}
	if err := bundle.ValidSignatureFormat(c.String("signature-format")); err != nil {
		return f, usagef("--%v", err)
	}
	for _, k := range c.StringSlice("verify-upstream-key") {
		uk, err := export.LoadUpstreamKey(k)
		if err != nil {
			return f, usagef("--verify-upstream-key: %v", err)
		}
		f.upstream = append(f.upstream, uk)
	}
	args := c.Args().Slice()
	if path := c.String("images-from"); path != "" {
		more, err := readLines(path)
		if err != nil {
			return f, err
		}
		args = append(args, more...)
	}
	for _, a := range args {
		s, err := export.ParseImageArg(a)
		if err != nil {
			return f, usagef("%v", err)
		}
		f.specs = append(f.specs, s)
	}
	if len(f.specs) == 0 && len(c.StringSlice("remove")) == 0 && !c.Bool("renew") {
		return f, usagef("no IMAGE given (--renew makes a bundle that only renews the targets' expiry)")
	}
	if p := c.String("platform"); p != "" {
		if f.platform, err = v1.ParsePlatform(p); err != nil {
			return f, usagef("--platform: %v", err)
		}
	}
	if err := inputDir("--repo", c.String("repo")); err != nil {
		return f, err
	}
	return f, outputDir("--output-file", c.String("output-file"))
}

func exportAction(c *cli.Context, e env) error {
	f, err := parseExportFlags(c)
	if err != nil {
		return err
	}
	ropts, err := remoteOptions(c)
	if err != nil {
		return err
	}
	ctx, cancel := withDeadline(c)
	defer cancel()
	out := c.String("output-file")
	res, err := writeBundle(ctx, out, f.split, export.Options{
		Repo: c.String("repo"), Destination: c.String("dest"), Images: f.specs, Removals: c.StringSlice("remove"),
		Platform: f.platform, Remote: ropts, InsecureRegistries: c.StringSlice("insecure-registry"),
		Progress: progress(e, "export"), Tool: "coldharbor " + version,
		Jobs: c.Int("jobs"), TempDir: filepath.Dir(out), Renew: c.Bool("renew"),
		Attachments: c.String("attachments"), AttachmentTypes: c.StringSlice("attachment-type"), UpstreamKeys: f.upstream,
		SignatureFormat: c.String("signature-format"), Since: c.String("since"),
	})
	if err != nil {
		return err
	}
	if f.asJSON {
		return writeJSON(c.App.Writer, res)
	}
	w := c.App.Writer
	if res.Parts > 0 {
		out = fmt.Sprintf("%s … %s (%d parts)", bundle.PartPath(out+bundle.FirstPartSuffix, 0), bundle.PartPath(out+bundle.FirstPartSuffix, res.Parts-1), res.Parts)
	}
	fmt.Fprintf(w, "Wrote %s: %d image(s), %d attachment(s), %d manifest(s), %d blob(s) (%d shared reference(s) stored once), %s\n",
		out, len(res.Index.Images), res.Attachments, res.Manifests, res.Blobs, res.SharedBlobs, humanBytes(res.Bytes))
	if res.Present > 0 {
		fmt.Fprintf(w, "differential: %d blob(s) left out, expected present in the destination (import checks before pushing)\n", res.Present)
	}
	printImages(c, res.Index.Images)
	fmt.Fprintf(w, "bundle index sha256: %s\n", res.IndexSHA256)
	return nil
}

func printImages(c *cli.Context, imgs []bundle.Image) {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIGEST\tSIZE\tPLATFORMS\tSOURCE\tATTACHED")
	for _, i := range imgs {
		attached := bundle.Summary(i.Attachments)
		if u := i.Upstream; u != nil {
			attached += "; upstream signature verified with key " + u.Key
		}
		if attached == "" {
			attached = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", i.Name, i.Digest, i.Size, strings.Join(i.Platforms, ","), i.Source, attached)
	}
	tw.Flush()
}

func inspectCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show what a bundle holds and what it changes, or an approval's state",
		ArgsUsage: "BUNDLE|APPROVAL",
		Description: `Reads only the bundle's head (never its blobs) and shows the images, digests,
sizes and platforms; with --repo, also the change to the targets: added,
changed, unchanged and removed names.

Given an approval, shows its state: the bundle it approves, the targets
version, who has signed, who may still sign and how many signatures are
missing (a partial approval). With --repo every targets signature is verified
against that repository's root; without, the approval's own account is shown.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "compare with the TUF repository in `DIR`"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error {
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			path, err := oneArg(c, "BUNDLE")
			if err != nil {
				return err
			}
			if isApproval(path) {
				return inspectApproval(c, path, asJSON)
			}
			p, err := planFor(c, path, c.String("repo"))
			if err != nil {
				return err
			}
			if err := bundle.StatParts(path, p.Head.Index); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(c.App.Writer, map[string]any{"plan": p, "images": p.Head.Index.Images, "parts": p.Head.Index.Parts})
			}
			if n := len(p.Head.Index.Parts); n > 0 {
				fmt.Fprintf(c.App.Writer, "split bundle: this first part and %d more beside it, each of the size its index lists\n", n)
			}
			printPlan(c, p, c.String("repo") != "")
			return nil
		},
	}
}

func planFor(c *cli.Context, path, repo string) (*approve.Plan, error) {
	f, err := bundle.OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return approve.MakePlanWith(c.Context, bufio.NewReaderSize(f, 1<<16), path, repo, approve.PlanOptions{DiscardUnimported: c.Bool("discard-unimported")})
}

func printPlan(c *cli.Context, p *approve.Plan, withRepo bool) {
	w := c.App.Writer
	fmt.Fprintf(w, "bundle %s\n  created %s, for %s\n", p.IndexSHA256, p.Created, p.Destination)
	if withRepo {
		fmt.Fprintf(w, "  targets v%d -> v%d", p.Current, p.NewVersion)
		if p.Rebased {
			fmt.Fprintf(w, " (the bundle was built against v%d; the new version is built from this repository's v%d plus the bundle's images; if the isolated side refused the approvals signed since, sign with --discard-unimported)", p.BundleBase, p.Current)
		}
		fmt.Fprintln(w)
		if len(p.Discarded) > 0 {
			fmt.Fprintf(w, "  built on v%d, the bundle's base: dropping what targets versions signed here since changed (%d target(s): %s)\n",
				p.BundleBase, len(p.Discarded), strings.Join(p.Discarded, ", "))
		}
	}
	fmt.Fprintln(w)
	if len(p.Changes) == 0 {
		fmt.Fprintln(w, "no change to the images: signing only renews the targets' expiry (90 days from now)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANGE\tNAME\tDIGEST\tSIZE\tPLATFORMS\tSIGNED\tSOURCE\tATTACHED")
	signed := 0
	for _, ch := range p.Changes {
		d := ch.Digest
		if ch.Kind == "changed" {
			d = ch.OldDigest[:19] + "… -> " + ch.Digest
		}
		if ch.Kind == "removed" {
			d = ch.OldDigest
		}
		n := "-"
		if ch.Signed > 0 {
			n = fmt.Sprint(ch.Signed)
			signed += ch.Signed
		}
		attached := ch.Attached
		if attached == "" && ch.Kind != "removed" {
			attached = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", ch.Kind, ch.Name, d, ch.Size, strings.Join(ch.Platforms, ","), n, ch.Source, attached)
	}
	tw.Flush()
	if signed > 0 {
		fmt.Fprintf(w, "\ncosign payloads: %d (each image's manifest and each platform manifest of an index, as cosign sign --recursive), one signature each per key\n", signed)
	}
}

func signCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "approve a bundle offline: sign its targets and cosign payloads (air-gapped machine)",
		ArgsUsage: "BUNDLE",
		Description: `Reads only the bundle's head, checks it against its index hashes and against
this signer's repository (same root of trust, payloads naming exactly the
bundled digests), shows what changes and asks for confirmation (--yes for
scripts; without a terminal it never asks and refuses without --yes).

Then signs the next targets version with every --key and, with each key, the
cosign payload of each image's manifest and of each platform manifest of an
index (as cosign sign --recursive: registries and Harbor's cosign policy check
the manifest a client pulls, and docker and containerd pull platform manifests
by digest), records the new targets version in --repo, and writes a small
approval bound to this bundle.

A bundle made against an older targets version than this signer's is rebased:
the new version keeps what was signed here since. When the isolated side
refused those approvals (or they were lost), --discard-unimported builds on the
bundle's base instead and drops them. A version no TUF client would download
(targets over 5,000,000 bytes) is never signed nor recorded.

Targets holders who are never in one room sign in several sittings: with
fewer keys than the targets threshold the approval is partial (it says who
signed and who may still sign; import refuses it, and the targets version is
not recorded yet). Each further holder runs sign BUNDLE --approval FILE --key
URI: their signatures (targets and every cosign payload) are added to FILE (or
written to -o), refusing an approval for another bundle or for another targets
version than this repository would sign now. The sitting that meets the
threshold records the version in --repo.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "the signer's TUF repository in `DIR`"},
			&cli.StringSliceFlag{Name: "key", Usage: "a targets key `URI` (repeat up to the threshold)"},
			&cli.StringFlag{Name: "output-file", Aliases: []string{"o"}, Usage: "write the approval to `FILE`"},
			&cli.StringFlag{Name: "approval", Usage: "add these keys' signatures to the partial approval `FILE` (written back unless -o)"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "sign without asking (scripts)"},
			&cli.BoolFlag{Name: "discard-unimported", Usage: "build on the bundle's base version, dropping targets versions signed here since (when the isolated side refused their approvals, or they were lost)"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error { return signAction(c, e) },
	}
}

func signAction(c *cli.Context, e env) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	path, err := oneArg(c, "BUNDLE")
	if err != nil {
		return err
	}
	out, partial := c.String("output-file"), c.String("approval")
	if out == "" {
		out = partial
	}
	if c.String("repo") == "" || out == "" || len(c.StringSlice("key")) == 0 {
		return usagef("--repo, --key and -o (or --approval) are required")
	}
	if err := checkKeyURIs(c.StringSlice("key")...); err != nil {
		return err
	}
	var af *bundle.ApprovalFile
	if partial != "" {
		if af, err = bundle.OpenApproval(partial); err != nil {
			return err
		}
	}
	if err := outputDir("--output-file", out); err != nil {
		return err
	}
	p, err := planFor(c, path, c.String("repo"))
	if err != nil {
		return err
	}
	if !asJSON {
		printPlan(c, p, true)
	}
	if !c.Bool("yes") {
		if err := confirm(e, fmt.Sprintf("Sign targets v%d with these changes?", p.NewVersion)); err != nil {
			return err
		}
	}
	keys, closeKeys, err := e.openKeys(c.Context, c.StringSlice("key"))
	if err != nil {
		return err
	}
	defer closeKeys()
	// The ceremony's attestation records travel with the targets.
	att, err := ceremony.Attestations(c.String("repo"))
	if err != nil {
		return err
	}
	res, err := signOrAdd(c, p, af, approve.Options{Keys: keys, Tool: "coldharbor " + version, Attestations: att})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(out, func(f *os.File) error {
		if _, err := f.Write(res.Approval); err != nil {
			return err
		}
		// Record before the approval appears: an approval whose
		// version the signer forgot would be signed again.
		return p.Record(c.Context, c.String("repo"), res)
	}); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(c.App.Writer, res)
	}
	printSigned(c, res, out)
	return nil
}

// signOrAdd signs a new approval, or adds to the partial one af.
func signOrAdd(c *cli.Context, p *approve.Plan, af *bundle.ApprovalFile, o approve.Options) (*approve.Result, error) {
	if af != nil {
		return p.AddSignatures(c.Context, af, o)
	}
	return p.Sign(c.Context, o)
}

func printSigned(c *cli.Context, res *approve.Result, out string) {
	w := c.App.Writer
	bundles := ""
	if res.BundleSignatures > 0 {
		bundles = fmt.Sprintf(" (and %d over the same digests' in-toto statements, for sigstore bundles)", res.BundleSignatures)
	}
	fmt.Fprintf(w, "\nSigned targets v%d with %d key(s) and %d cosign signature(s)%s; wrote %s (%s)\n",
		res.TargetsVersion, len(res.SignedBy), res.Signatures, bundles, out, humanBytes(int64(len(res.Approval))))
	if res.Complete {
		return
	}
	fmt.Fprintf(w, "\nPartial approval: %d of the %d targets signatures; %d more needed. Signed by:\n", len(res.State.SignedBy), res.State.Threshold, res.State.Missing)
	for _, id := range res.State.SignedBy {
		fmt.Fprintf(w, "  %s\n", id)
	}
	fmt.Fprintln(w, "May still sign:")
	for _, id := range res.State.MaySign {
		fmt.Fprintf(w, "  %s\n", id)
	}
	fmt.Fprintf(w, "Each of them runs: coldharbor sign BUNDLE --repo DIR --approval %s --key URI\n", out)
}

// confirm asks on the terminal; without one it refuses.
func confirm(e env, question string) error {
	if e.stdin == nil || !term.IsTerminal(int(e.stdin.Fd())) {
		return withHint(usagef("refusing to sign without confirmation: no terminal to ask on"), "pass --yes after checking 'coldharbor inspect BUNDLE --repo DIR'")
	}
	fmt.Fprintf(e.stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(e.stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return fmt.Errorf("not signed: declined")
	}
	return nil
}

func importCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "verify a bundle and its approval, push images and signatures, publish TUF (isolated side)",
		ArgsUsage: "BUNDLE APPROVAL | REFRESH",
		Description: `Before anything is uploaded: verifies the approval against this repository's
pinned root (targets threshold and key IDs, a version above the published one,
not expired), its binding to this very bundle, every image's digest and size
against the signed targets, and every cosign signature.

Then pushes blobs (streamed from the bundle, digest-checked, skipping blobs the
registry has, --jobs at a time), manifests (children before indexes), tags, and
the cosign signature manifests (tag sha256-<hex>.sig); and only then publishes
targets, each manifest and cosign.pub as target files, and a new snapshot and
timestamp signed with the online keys. A refusal (exit 3) tags nothing and
publishes nothing; an interrupted import can be run again.

--signature-format auto (the default) asks the target what it shows as signed:
Harbor through /api/v2.0/systeminfo (its version is shown to signed-in users
only), another registry whether it serves the OCI referrers API. Every Harbor
and every registry shows cosign's legacy .sig signatures, and cosign v2 and v3
verify them, so auto writes legacy — except on a digest whose vendor signature
(carried as an attachment) is a sigstore bundle and no .sig: there cosign v3
reads only bundles (and cosign v2 fails either way), so ours goes as a sigstore
bundle too, unless the target is a Harbor before 2.15, which shows only .sig
signatures. --signature-format bundle writes sigstore bundles (OCI 1.1
referrers; the sha256-<hex> referrers tag where the registry has no referrers
API) for every digest. Never both formats of ours on one digest. Bundles need
an export with --signature-format bundle or auto (its default). The decision
and its reason are logged with --verbose and recorded in --output json.

With one argument, a refresh bundle ('coldharbor refresh --out'): verifies its
timestamp (and snapshot) against the pinned root — signatures, versions above
the trusted ones, expiry — and publishes them. Needs only --repo.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "the isolated side's TUF repository in `DIR`"},
			&cli.StringFlag{Name: "registry", Usage: "the target registry, `HOST[/PREFIX]` (the bundle's --dest)"},
			&cli.StringFlag{Name: "snapshot-key", Usage: "the snapshot key `URI`"},
			&cli.StringFlag{Name: "timestamp-key", Usage: "the timestamp key `URI`"},
			&cli.IntFlag{Name: "jobs", Usage: "upload `N` blobs at once", Value: 4},
			&cli.StringFlag{Name: "signature-format", Value: mirror.SignatureFormatAuto,
				Usage: "cosign signature `FORMAT`: auto (ask the target), legacy (sha256-<hex>.sig tags, cosign 2.x), bundle (sigstore bundle referrers, cosign 3.x; needs a bundle exported with --signature-format bundle or auto)"},
			&cli.BoolFlag{Name: "require-attestation", Usage: "refuse targets signed by a key whose YubiKey attestation is not recorded in ceremony/attestations.json and valid"},
			&cli.StringFlag{Name: "attestation-ca", Usage: "with --require-attestation, verify attestations against this CA `FILE` instead of Yubico's root"},
			networkFlags(24 * time.Hour)[0], networkFlags(24 * time.Hour)[1],
			outputFlag(),
		},
		Action: func(c *cli.Context) error { return importAction(c, e) },
	}
}

// checkImportFlags checks import's flags and its two input files; the
// single-argument form (a refresh bundle) is checked by importRefresh.
func checkImportFlags(c *cli.Context) error {
	if c.NArg() != 2 {
		return usagef("import takes BUNDLE and APPROVAL, or one refresh bundle (got %d arguments)", c.NArg())
	}
	for _, f := range []string{"repo", "registry", "snapshot-key", "timestamp-key"} {
		if c.String(f) == "" {
			return usagef("--%s is required", f)
		}
	}
	if c.Int("jobs") < 1 || c.Int("jobs") > 64 {
		return usagef("--jobs must be between 1 and 64")
	}
	switch c.String("signature-format") {
	case mirror.SignatureFormatAuto, mirror.SignatureFormatLegacy, mirror.SignatureFormatBundle:
	default:
		return usagef("--signature-format %q: want auto, legacy or bundle", c.String("signature-format"))
	}
	if err := inputDir("--repo", c.String("repo")); err != nil {
		return err
	}
	for i, what := range []string{"BUNDLE", "APPROVAL"} {
		if err := inputFile(what, c.Args().Get(i)); err != nil {
			return err
		}
	}
	return checkKeyURIs(c.String("snapshot-key"), c.String("timestamp-key"))
}

func importAction(c *cli.Context, e env) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	if c.NArg() == 1 {
		return importRefresh(c, c.Args().First(), asJSON)
	}
	if err := checkImportFlags(c); err != nil {
		return err
	}
	ropts, err := remoteOptions(c)
	if err != nil {
		return err
	}
	tr, err := transport(c)
	if err != nil {
		return err
	}
	attRoots, err := attestationRoots(c.String("attestation-ca"))
	if err != nil {
		return err
	}
	keys := map[string]*hsm.Key{}
	for _, f := range []string{"snapshot-key", "timestamp-key"} {
		k, err := e.openKey(c.Context, c.String(f))
		if err != nil {
			return err
		}
		defer k.Close()
		keys[f] = k
	}
	ctx, cancel := withDeadline(c)
	defer cancel()
	e.warnUnpinned(c.String("repo"))
	start := time.Now()
	res, err := mirror.Import(ctx, c.Args().Get(0), c.Args().Get(1), mirror.ImportOptions{
		Repo: c.String("repo"), Registry: c.String("registry"),
		SnapshotKey: keys["snapshot-key"], TimestampKey: keys["timestamp-key"],
		Remote: ropts, InsecureRegistries: c.StringSlice("insecure-registry"),
		Jobs: c.Int("jobs"), Progress: progress(e, "push"), Log: logger(),
		SignatureFormat: c.String("signature-format"), Transport: tr, Keychain: authn.DefaultKeychain,
		RequireAttestation: c.Bool("require-attestation"), AttestationRoots: attRoots,
	})
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(c.App.Writer, res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "Imported %d image(s) into %s in %s: %d blob(s) pushed (%s), %d already present, %d mounted across repositories, %d manifest(s), %d signature(s) of ours (%s, %d as sigstore bundles; %d .sig manifest(s) already there), %d attachment(s); all read back\n",
		len(res.Images), c.String("registry"), time.Since(start).Round(time.Millisecond), res.BlobsPushed, humanBytes(res.BytesPushed), res.BlobsSkipped, res.BlobsMounted, res.Manifests,
		res.Signatures, res.SignatureFormat.Chosen, res.SignatureFormat.Bundles, res.SignaturesPresent, res.Attachments)
	for _, n := range res.Images {
		fmt.Fprintf(w, "  %s/%s\n", strings.TrimSuffix(c.String("registry"), "/"), n)
	}
	if res.AlreadyImported {
		fmt.Fprintf(w, "already imported: targets v%d (the registry holds every manifest, tag and signature; nothing published)\n", res.TargetsVersion)
		return nil
	}
	fmt.Fprintf(w, "Published targets v%d, snapshot v%d, timestamp v%d in %s\n", res.TargetsVersion, res.SnapshotVersion, res.TimestampVersion, c.String("repo"))
	return nil
}

func sourceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "repo", Usage: "read the TUF repository from `DIR`"},
		&cli.StringFlag{Name: "tuf-url", Usage: "read the TUF repository from `URL` (serving metadata/ and targets/)"},
		&cli.StringFlag{Name: "root", Usage: "bootstrap trust from this root.json `FILE` (first use only; check its sha256)"},
		&cli.StringFlag{Name: "cache", Usage: "keep trusted metadata in `DIR` (default: the user cache); catches rollbacks across runs"},
		networkFlags(10 * time.Minute)[0], networkFlags(10 * time.Minute)[1],
	}
}

func sourceFrom(c *cli.Context) (mirror.Source, error) {
	s := mirror.Source{Dir: c.String("repo"), URL: c.String("tuf-url"), Root: c.String("root"), Cache: c.String("cache")}
	if (s.Dir == "") == (s.URL == "") {
		return s, usagef("give exactly one of --repo DIR or --tuf-url URL")
	}
	tr, err := transport(c)
	if err != nil {
		return s, err
	}
	s.HTTP = &http.Client{Transport: tr, Timeout: c.Duration("timeout")}
	return s, nil
}

func listCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the trusted targets: NAME, DIGEST, SIZE, ROLE and expiry (like notary list)",
		Description: `Refreshes the TUF repository as a client would (go-tuf's updater, with a
persistent cache) and lists every target.`,
		Flags: append(sourceFlags(), outputFlag()),
		Action: func(c *cli.Context) error {
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			src, err := sourceFrom(c)
			if err != nil {
				return err
			}
			ts, err := mirror.List(c.Context, src)
			if err != nil {
				return err
			}
			if asJSON {
				if ts == nil {
					ts = []mirror.Target{}
				}
				return writeJSON(c.App.Writer, map[string]any{"targets": ts})
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tSIZE\tROLE\tEXPIRES")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", t.Name, t.Digest, t.Size, t.Role, t.Expires.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

func verifyCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check images against TUF and their cosign signatures",
		ArgsUsage: "IMAGE...",
		Description: `For each IMAGE (REGISTRY/REPOSITORY:TAG): refreshes TUF as a client would,
resolves the image in its registry, checks its digest is the trusted target for
its name, and that a cosign signature by a key in the trusted cosign.pub target
covers that digest and, for an index, each platform manifest it lists. Prints
what was checked; exit 3 when anything fails.

--require-attestation also refuses targets signed by a key whose YubiKey
attestation the trusted ceremony/attestations.json target does not record, or
records but does not verify against Yubico's PIV CA (or --attestation-ca), and
accepts only cosign signatures by attested keys.`,
		Flags: append(sourceFlags(),
			&cli.StringFlag{Name: "registry", Usage: "targets are relative to `HOST[/PREFIX]` (default: each image's registry)"},
			&cli.BoolFlag{Name: "require-attestation", Usage: "refuse targets signed by a key whose YubiKey attestation is not recorded and valid"},
			&cli.StringFlag{Name: "attestation-ca", Usage: "verify recorded attestations against this CA `FILE` instead of Yubico's root"},
			outputFlag()),
		Action: func(c *cli.Context) error {
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			src, err := sourceFrom(c)
			if err != nil {
				return err
			}
			if c.NArg() == 0 {
				return usagef("no IMAGE given")
			}
			ropts, err := remoteOptions(c)
			if err != nil {
				return err
			}
			attRoots, err := attestationRoots(c.String("attestation-ca"))
			if err != nil {
				return err
			}
			ctx, cancel := withDeadline(c)
			defer cancel()
			checks, err := mirror.VerifyImages(ctx, src, c.Args().Slice(), mirror.VerifyOptions{Registry: c.String("registry"), Remote: ropts,
				InsecureRegistries: c.StringSlice("insecure-registry"), RequireAttestation: c.Bool("require-attestation"), AttestationRoots: attRoots})
			if asJSON {
				if checks == nil {
					checks = []mirror.Check{}
				}
				verified := map[string]any{"images": checks, "verified": err == nil}
				if err != nil {
					verified["error"] = err.Error()
				}
				if jerr := writeJSON(c.App.Writer, verified); jerr != nil {
					return jerr
				}
			} else {
				for _, ch := range checks {
					fmt.Fprintf(c.App.Writer, "%s\n  target %s in targets v%d: %s\n  registry digest matches; cosign signature %s by key %s verified\n",
						ch.Image, ch.Target, ch.TargetsVersion, ch.TrustedDigest, ch.SignatureTag, ch.SignedBy)
					for _, pc := range ch.Platforms {
						fmt.Fprintf(c.App.Writer, "  platform %s %s: cosign signature by key %s verified\n", pc.Platform, pc.Digest, pc.SignedBy)
					}
				}
			}
			return err
		},
	}
}

func readLines(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}

// writeFileAtomic creates path only when write succeeds: a failed export
// leaves no half bundle where a user would find it.
func writeFileAtomic(path string, write func(*os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func isApproval(path string) bool {
	f, err := bundle.OpenFile(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return bundle.IsApproval(f)
}

func inspectApproval(c *cli.Context, path string, asJSON bool) error {
	af, err := bundle.OpenApproval(path)
	if err != nil {
		return err
	}
	s, err := approve.InspectApproval(c.Context, af, c.String("repo"))
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(c.App.Writer, s)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "approval of bundle %s\n  targets v%d, created %s by %s, %d cosign signature(s)\n", s.Bundle.IndexSHA256, s.TargetsVersion, s.Created.Format(time.RFC3339), s.Tool, s.Cosign)
	state := "complete"
	if !s.Complete {
		state = fmt.Sprintf("PARTIAL: %d more targets signature(s) needed (threshold %d)", s.State.Missing, s.State.Threshold)
	}
	how := "verified against " + c.String("repo")
	if !s.Checked {
		how = "as the approval says; pass --repo DIR to verify the signatures"
	}
	fmt.Fprintf(w, "  state: %s (%s)\nsigned by:\n", state, how)
	for _, id := range s.State.SignedBy {
		fmt.Fprintf(w, "  %s\n", id)
	}
	if len(s.State.MaySign) > 0 {
		fmt.Fprintln(w, "may still sign:")
		for _, id := range s.State.MaySign {
			fmt.Fprintf(w, "  %s\n", id)
		}
	}
	return nil
}
