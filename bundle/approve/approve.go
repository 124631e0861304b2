// Package approve is the offline signer: it reads only a bundle's head,
// shows what signing would change against the signer's TUF repository,
// signs the next targets version and the cosign payloads with the targets
// keys, and writes the approval (package bundle's format). It never
// touches a network.
package approve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// Change is one line of what a bundle does to the targets.
type Change struct {
	Kind      string   `json:"kind"` // added, changed, unchanged, removed
	Name      string   `json:"name"`
	Digest    string   `json:"digest,omitempty"`
	OldDigest string   `json:"old_digest,omitempty"`
	Size      int64    `json:"size,omitempty"`
	MediaType string   `json:"media_type,omitempty"`
	Platforms []string `json:"platforms,omitempty"`
	Source    string   `json:"source,omitempty"`
	// Signed is how many manifests of the image get a cosign signature:
	// its own and, for an index, each child (cosign sign --recursive).
	Signed int `json:"signed_manifests,omitempty"`
	// Attached summarises what travels attached to the image, for example
	// "2 signatures, 1 SBOM, 1 provenance"; signed with the target.
	Attached string `json:"attached,omitempty"`
}

// Plan is what signing a bundle would do, computed from the bundle's head
// and a repository (the signer's own, or any copy for inspect).
type Plan struct {
	Head        *bundle.Head `json:"-"`
	IndexSHA256 string       `json:"index_sha256"`
	Destination string       `json:"destination"`
	Created     string       `json:"created"`
	BundleBase  int64        `json:"bundle_base_targets_version"`
	Current     int64        `json:"current_targets_version"`
	NewVersion  int64        `json:"new_targets_version"`
	Rebased     bool         `json:"rebased"`
	Changes     []Change     `json:"changes"`
	// Discarded are the targets that versions signed here after the
	// bundle's base changed, dropped by PlanOptions.DiscardUnimported.
	Discarded []string `json:"discarded,omitempty"`
	state     *trust.State
	base      *metadata.Metadata[metadata.TargetsType] // what the new version is built on
}

// PlanOptions configure MakePlanWith.
type PlanOptions struct {
	// DiscardUnimported builds the new version on the bundle's base (the
	// version the isolated side had published when the bundle was made)
	// instead of on targets versions signed here since: for when the
	// isolated side refused those approvals, or they were lost. What they
	// changed is dropped (Plan.Discarded lists it).
	DiscardUnimported bool
}

// MakePlan reads a bundle's head from r and compares it with the repository
// in dir. It checks every payload is exactly the one this image needs and
// that the bundle was made against the same root of trust.
func MakePlan(ctx context.Context, r io.Reader, file, dir string) (*Plan, error) {
	return MakePlanWith(ctx, r, file, dir, PlanOptions{})
}

// MakePlanWith is MakePlan with options.
func MakePlanWith(ctx context.Context, r io.Reader, file, dir string, o PlanOptions) (*Plan, error) {
	head, err := bundle.ReadHead(r, file)
	if err != nil {
		return nil, err
	}
	if err := checkPayloads(head, file); err != nil {
		return nil, err
	}
	p := &Plan{Head: head, IndexSHA256: head.IndexSHA256, Destination: head.Index.Destination,
		Created: head.Index.Created.Format(time.RFC3339), BundleBase: head.Index.Base.TargetsVersion}
	if dir == "" {
		for _, img := range head.Index.Images {
			p.Changes = append(p.Changes, imageChange("added", img, ""))
		}
		for _, r := range head.Index.Removals {
			p.Changes = append(p.Changes, Change{Kind: "removed", Name: r})
		}
		return p, nil
	}
	st, err := trust.LoadState(ctx, dir)
	if err != nil {
		return nil, err
	}
	if err := p.against(st, dir, o); err != nil {
		return nil, err
	}
	if err := p.checkPending(file); err != nil {
		return nil, err
	}
	sort.SliceStable(p.Changes, func(i, j int) bool { return p.Changes[i].Name < p.Changes[j].Name })
	return p, nil
}

// checkPayloads checks each image's children are the ones its index lists
// (so nothing the image does not hold is signed) and each payload is
// exactly the one for its digest.
func checkPayloads(head *bundle.Head, file string) error {
	for _, img := range head.Index.Images {
		if err := bundle.CheckChildren(img, head.IndexBytes); err != nil {
			return &trust.VerificationError{What: trust.WhatBundle, Reason: err.Error()}
		}
		for _, sd := range img.SignedDigests() {
			want, err := bundle.DigestPayload(head.Index.Destination, img.Name, sd.Digest)
			if err != nil {
				return &bundle.FormatError{File: file, Reason: err.Error()}
			}
			if !bytes.Equal(want, head.Payloads[sd.Payload]) {
				return &trust.VerificationError{What: trust.WhatBundle, Reason: fmt.Sprintf("the cosign payload for %s is not the one for %s under %s", img.Name, sd.Digest, head.Index.Destination)}
			}
		}
	}
	return nil
}

// against compares the bundle with the signer's repository: the same root
// chain, a base no newer than ours, and the changes to the targets the new
// version is built on.
func (p *Plan) against(st *trust.State, dir string, o PlanOptions) error {
	p.state, p.base = st, st.Targets
	head := p.Head
	// The bundle's root chain must be ours: the same bytes for every
	// version both have, and none we lack.
	for v, b := range head.Roots {
		mine, ok := st.RootRaw[v]
		if !ok {
			return &trust.VerificationError{What: trust.Root, Version: v, Reason: fmt.Sprintf("the bundle was made against root v%d, which this repository (root v%d) does not have: update it first", v, st.Root.Signed.Version)}
		}
		if !bytes.Equal(mine, b) {
			return &trust.VerificationError{What: trust.Root, Version: v, Reason: "the bundle's root differs from this repository's: it was made for another root of trust"}
		}
	}
	p.Current = st.Targets.Signed.Version
	// Above every version with a file here, even one that does not load
	// (over the client's limit): metadata is never rewritten.
	p.NewVersion = max(p.Current, trust.HighestVersion(dir, trust.Targets)) + 1
	if p.BundleBase > p.Current {
		return &trust.VerificationError{What: trust.Targets, Version: p.BundleBase, Reason: fmt.Sprintf("the bundle was built against targets v%d, newer than this repository's v%d: this signer's repository is stale or was restored from an old copy", p.BundleBase, p.Current)}
	}
	if o.DiscardUnimported && p.BundleBase < p.Current {
		base, err := st.LoadTargetsVersion(dir, p.BundleBase)
		if err != nil {
			return fmt.Errorf("reading targets v%d, the bundle's base: %w", p.BundleBase, err)
		}
		p.Discarded = diffNames(base, st.Targets)
		p.base = base
	}
	p.Rebased = p.BundleBase != p.base.Signed.Version
	p.changes()
	return nil
}

// changes lists what the bundle does to the targets built on.
func (p *Plan) changes() {
	cur := p.base.Signed.Targets
	for _, img := range p.Head.Index.Images {
		old, ok := cur[img.Name]
		switch {
		case !ok:
			p.Changes = append(p.Changes, imageChange("added", img, ""))
		case "sha256:"+old.Hashes["sha256"].String() != img.Digest:
			p.Changes = append(p.Changes, imageChange("changed", img, "sha256:"+old.Hashes["sha256"].String()))
		default:
			p.Changes = append(p.Changes, imageChange("unchanged", img, ""))
		}
	}
	for _, r := range p.Head.Index.Removals {
		old, ok := cur[r]
		if !ok {
			continue // already gone: nothing to do
		}
		p.Changes = append(p.Changes, Change{Kind: "removed", Name: r, OldDigest: "sha256:" + old.Hashes["sha256"].String(), Size: old.Length})
	}
}

// checkPending compares, when the bundle was built on the version we build
// on, the exporter's pending targets with what we build.
func (p *Plan) checkPending(file string) error {
	if p.Rebased {
		return nil
	}
	want, err := bundle.ApplyIndex(p.base, p.Head.Index, time.Now(), "")
	if err != nil {
		return err
	}
	got, err := metadata.Targets().FromBytes(p.Head.Pending)
	if err != nil {
		return &bundle.FormatError{File: file, Member: bundle.PendingTargets, Reason: err.Error()}
	}
	if err := sameTargets(want, got); err != nil {
		return &trust.VerificationError{What: trust.Targets, Version: got.Signed.Version, Reason: "the bundle's pending targets differ from what this repository builds from it: " + err.Error()}
	}
	return nil
}

// diffNames lists the targets that differ between a and b (added, changed
// or removed in b).
func diffNames(a, b *metadata.Metadata[metadata.TargetsType]) []string {
	var out []string
	for n, t := range b.Signed.Targets {
		if n == bundle.CosignPubTarget {
			continue // rebuilt from root in every version
		}
		if o, ok := a.Signed.Targets[n]; !ok || o.Length != t.Length || !o.Hashes.Equal(t.Hashes) {
			out = append(out, n)
		}
	}
	for n := range a.Signed.Targets {
		if _, ok := b.Signed.Targets[n]; !ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// attachedLine is what the signer is shown of an image's attachments and
// of the upstream signature export verified.
func attachedLine(img bundle.Image) string {
	s := bundle.Summary(img.Attachments)
	if u := img.Upstream; u != nil {
		if s != "" {
			s += "; "
		}
		s += fmt.Sprintf("upstream signature (%s) verified with key %s", u.Format, u.Key)
	}
	return s
}

func imageChange(kind string, img bundle.Image, old string) Change {
	return Change{Kind: kind, Name: img.Name, Digest: img.Digest, OldDigest: old, Size: img.Size, MediaType: img.MediaType, Platforms: img.Platforms, Source: img.Source,
		Signed: len(img.SignedDigests()), Attached: attachedLine(img)}
}

func sameTargets(a, b *metadata.Metadata[metadata.TargetsType]) error {
	if a.Signed.Version != b.Signed.Version {
		return fmt.Errorf("version %d, expected %d", b.Signed.Version, a.Signed.Version)
	}
	if len(a.Signed.Targets) != len(b.Signed.Targets) {
		return fmt.Errorf("%d targets, expected %d", len(b.Signed.Targets), len(a.Signed.Targets))
	}
	for n, t := range a.Signed.Targets {
		o, ok := b.Signed.Targets[n]
		if !ok || o.Length != t.Length || !o.Hashes.Equal(t.Hashes) {
			return fmt.Errorf("target %s differs", n)
		}
	}
	return nil
}

// Options configure Sign.
type Options struct {
	Keys []*hsm.Key
	// Attestations is the content of trust.AttestationsTarget (the
	// ceremony transcript's attestation records), published with these
	// targets; nil keeps what the targets have.
	Attestations []byte
	Now          time.Time
	Tool         string
}

// Result is what a signature approved.
type Result struct {
	TargetsVersion int64    `json:"targets_version"`
	SignedBy       []string `json:"signed_by"`
	Images         int      `json:"images"`
	Signatures     int      `json:"cosign_signatures"`
	// BundleSignatures are the signatures over in-toto statements (the
	// export asked for sigstore bundles), not counted in Signatures.
	BundleSignatures int    `json:"bundle_signatures"`
	Approval         []byte `json:"-"`
	// Complete is false for a partial approval; State says who signed and
	// who may still sign.
	Complete bool                  `json:"complete"`
	State    *trust.SignatureState `json:"state"`
	targets  *metadata.Metadata[metadata.TargetsType]
}

// Sign signs a plan made against the signer's repository: the next targets
// version (the repository's own targets plus the bundle's images, each
// bound to this bundle) with every key given, and each image's cosign
// payload with each key. It returns the approval's bytes; Record stores the
// new targets version in the repository. With fewer keys than the targets
// threshold the approval is partial: it says who signed and who may still
// sign, and the other holders add their signatures (AddSignatures).
func (p *Plan) Sign(ctx context.Context, o Options) (*Result, error) {
	if p.state == nil {
		return nil, fmt.Errorf("internal error: a plan made without a repository cannot be signed")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	signers, signedBy, err := p.signersOf(o.Keys)
	if err != nil {
		return nil, err
	}
	next, cosignPub, err := p.buildTargets(now, o.Attestations)
	if err != nil {
		return nil, err
	}
	for _, k := range signers {
		if err := trust.Sign(next, trust.Targets, k.Signer); err != nil {
			return nil, err
		}
	}
	a := &bundle.Approval{Format: bundle.ApprovalFormat, Tool: o.Tool, Created: now.UTC().Truncate(time.Second),
		Bundle:         bundle.BundleRef{IndexSHA256: p.IndexSHA256, IndexSize: int64(len(p.Head.IndexRaw))},
		TargetsVersion: next.Signed.Version, Signatures: []bundle.Signature{}}
	if err := p.signPayloads(ctx, a, signers, signedBy); err != nil {
		return nil, err
	}
	return p.finish(a, next, cosignPub, o.Attestations, signedBy)
}

// Record stores the signed targets version in the signer's repository, so
// the next bundle builds on it. A partial approval is not recorded: the
// version is recorded by the sitting that completes it.
func (p *Plan) Record(ctx context.Context, dir string, res *Result) error {
	if !res.Complete {
		return nil
	}
	unlock, err := trust.Lock(ctx, dir)
	if err != nil {
		return err
	}
	defer unlock()
	return trust.Publish(ctx, dir, trust.Publication{Targets: res.targets})
}
