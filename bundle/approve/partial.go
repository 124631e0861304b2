package approve

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// signersOf checks the keys a holder gives: each a targets key of the
// repository's root, once, with its private half here.
func (p *Plan) signersOf(keys []*hsm.Key) ([]*hsm.Key, []string, error) {
	root := p.state.Root
	ids, _ := trust.RoleKeyIDs(root, trust.Targets)
	var signers []*hsm.Key
	var signedBy []string
	for _, k := range keys {
		id, err := trust.KeyID(k.Public)
		if err != nil {
			return nil, nil, err
		}
		if slices.Contains(signedBy, id) {
			return nil, nil, fmt.Errorf("%s: the same key is given twice (key ID %s)", k.URI, id)
		}
		if !slices.Contains(ids, id) {
			return nil, nil, &trust.VerificationError{What: trust.Targets, KeyIDs: []string{id}, Reason: fmt.Sprintf("key %s is not a targets key of root v%d", k.URI, root.Signed.Version)}
		}
		if !k.Private() {
			return nil, nil, fmt.Errorf("%s: only a public key is here: give the private key (or the YubiKey) to sign", k.URI)
		}
		signers = append(signers, k)
		signedBy = append(signedBy, id)
	}
	if len(signers) == 0 {
		return nil, nil, fmt.Errorf("no targets key given")
	}
	return signers, signedBy, nil
}

// buildTargets is the unsigned next targets version this plan approves,
// with cosign.pub naming root's targets keys.
func (p *Plan) buildTargets(now time.Time, attestations []byte) (*metadata.Metadata[metadata.TargetsType], []byte, error) {
	next, err := bundle.ApplyIndex(p.base, p.Head.Index, now, p.IndexSHA256)
	if err != nil {
		return nil, nil, err
	}
	next.Signed.Version = p.NewVersion
	cosignPub, err := bundle.CosignPub(p.state.Root)
	if err != nil {
		return nil, nil, err
	}
	next.Signed.Targets[bundle.CosignPubTarget] = bundle.TargetFile(bundle.CosignPubTarget, cosignPub)
	if attestations != nil {
		next.Signed.Targets[trust.AttestationsTarget] = bundle.TargetFile(trust.AttestationsTarget, attestations)
	}
	return next, cosignPub, nil
}

// signPayloads adds each signer's cosign signature over every payload: the
// image's manifest and each child's, as cosign sign --recursive; and, when
// the export asked for sigstore bundles, over each digest's in-toto
// statement (what cosign v3 signs).
func (p *Plan) signPayloads(ctx context.Context, a *bundle.Approval, signers []*hsm.Key, ids []string) error {
	formats := []string{""}
	if bundle.SignsBundles(p.Head.Index.SignatureFormat) {
		formats = append(formats, bundle.SigBundle)
	}
	for _, img := range p.Head.Index.Images {
		for _, sd := range img.SignedDigests() {
			for _, f := range formats {
				msg := p.Head.Payloads[sd.Payload]
				if f == bundle.SigBundle {
					msg = bundle.StatementPAE(sd.Digest)
				}
				for i, k := range signers {
					sig, err := signChecked(k, msg)
					if err != nil {
						return fmt.Errorf("the cosign signature of %s (%s) with %s: %w", img.Name, sd.Digest, k.URI, err)
					}
					a.Signatures = append(a.Signatures, bundle.Signature{Image: img.Name, Digest: sd.Digest, Payload: sd.Payload, KeyID: ids[i],
						Signature: base64.StdEncoding.EncodeToString(sig), Format: f})
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// signChecked signs msg with k and checks the signature.
func signChecked(k *hsm.Key, msg []byte) ([]byte, error) {
	sig, err := k.Signer.SignMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	if err := hsm.VerifySignature(k.Public, msg, sig); err != nil {
		return nil, fmt.Errorf("self-check failed: %w", err)
	}
	return sig, nil
}

// finish checks every targets signature, marks the approval partial while
// the threshold is not met, and writes it with the root versions the
// isolated side may not have yet (the signer cannot know which: every one
// after v1, and the importer skips those it has).
func (p *Plan) finish(a *bundle.Approval, next *metadata.Metadata[metadata.TargetsType], cosignPub, attestations []byte, signedBy []string) (*Result, error) {
	root := p.state.Root
	state, err := trust.CheckSignatures(root, trust.Targets, next)
	if err != nil {
		return nil, fmt.Errorf("self-check of targets v%d failed: %w", next.Signed.Version, err)
	}
	a.Partial = nil
	if !state.Complete() {
		a.Partial = &bundle.Partial{Threshold: state.Threshold, SignedBy: state.SignedBy, MaySign: state.MaySign, Missing: state.Missing}
	} else if err := root.VerifyDelegate(trust.Targets, next); err != nil {
		return nil, fmt.Errorf("self-check of targets v%d failed: %w", next.Signed.Version, err)
	}
	targetsRaw, err := next.ToBytes(true)
	if err != nil {
		return nil, err
	}
	// Never sign (and so never record) what the isolated side's TUF
	// clients would refuse to download.
	if err := bundle.CheckLimit(fmt.Sprintf("bytes of targets v%d (%d targets)", next.Signed.Version, len(next.Signed.Targets)), int64(len(targetsRaw)), trust.MaxTargetsSize,
		"no TUF client would download it: remove targets no longer needed in this bundle or an earlier one, then sign again"); err != nil {
		return nil, err
	}
	var roots []bundle.ApprovalRoot
	for v := max(2, root.Signed.Version-bundle.MaxApprovalRoots+1); v <= root.Signed.Version; v++ {
		roots = append(roots, bundle.ApprovalRoot{Version: v, Bytes: p.state.RootRaw[v]})
	}
	var buf bytes.Buffer
	if err := bundle.WriteApprovalAttested(&buf, a, targetsRaw, cosignPub, attestations, roots); err != nil {
		return nil, err
	}
	if err := bundle.CheckLimit("bytes of approval", int64(buf.Len()), bundle.MaxApproval, "the importer would refuse it: sign with fewer keys, or export fewer images per bundle"); err != nil {
		return nil, err
	}
	bundles := 0
	for _, s := range a.Signatures {
		if s.Format != "" {
			bundles++
		}
	}
	return &Result{TargetsVersion: next.Signed.Version, SignedBy: signedBy, Images: len(p.Head.Index.Images), Signatures: len(a.Signatures) - bundles,
		BundleSignatures: bundles, Approval: buf.Bytes(), Complete: state.Complete(), State: state, targets: next}, nil
}

// AddSignatures adds one more sitting's signatures to a partial approval
// made for this plan's bundle: the targets (the same signed bytes the
// earlier holders signed) and every cosign payload, with each key given.
// It refuses an approval for another bundle, for another targets version
// than this repository would sign now, or with other targets; a key that
// has signed already; and an approval that is complete.
func (p *Plan) AddSignatures(ctx context.Context, af *bundle.ApprovalFile, o Options) (*Result, error) {
	if p.state == nil {
		return nil, fmt.Errorf("internal error: a plan made without a repository cannot be signed")
	}
	tg, err := p.matchApproval(af)
	if err != nil {
		return nil, err
	}
	before, err := trust.CheckSignatures(p.state.Root, trust.Targets, tg)
	if err != nil {
		return nil, err
	}
	if before.Complete() {
		return nil, &trust.VerificationError{What: trust.WhatApproval, Version: tg.Signed.Version, Reason: fmt.Sprintf("already complete: signed by %d of the %d targets signatures it needs", len(before.SignedBy), before.Threshold)}
	}
	signers, ids, err := p.signersOf(o.Keys)
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		if slices.Contains(before.SignedBy, id) {
			return nil, fmt.Errorf("key %s (%s) has signed this approval already", id, signers[i].URI)
		}
		if err := trust.Sign(tg, trust.Targets, signers[i].Signer); err != nil {
			return nil, err
		}
	}
	a := *af.Approval
	a.Signatures = append([]bundle.Signature{}, af.Approval.Signatures...)
	if err := p.signPayloads(ctx, &a, signers, ids); err != nil {
		return nil, err
	}
	return p.finish(&a, tg, af.CosignPub, af.Attestations, append(append([]string{}, before.SignedBy...), ids...))
}

// matchApproval checks that a partial approval is for this plan: the same
// bundle, the targets version this repository would sign now, the same
// targets and cosign keys. It returns the approval's targets.
func (p *Plan) matchApproval(af *bundle.ApprovalFile) (*metadata.Metadata[metadata.TargetsType], error) {
	ref := bundle.BundleRef{IndexSHA256: p.IndexSHA256, IndexSize: int64(len(p.Head.IndexRaw))}
	if af.Approval.Bundle != ref {
		return nil, &trust.VerificationError{What: trust.WhatApproval, Reason: fmt.Sprintf("made for another bundle: it approves bundle index sha256 %s, this bundle's is %s", af.Approval.Bundle.IndexSHA256, p.IndexSHA256)}
	}
	tg, err := metadata.Targets().FromBytes(af.Targets)
	if err != nil {
		return nil, &trust.VerificationError{What: trust.Targets, Reason: "the approval's targets.json does not parse", Err: err}
	}
	v := tg.Signed.Version
	if v != af.Approval.TargetsVersion || v != p.NewVersion {
		return nil, &trust.VerificationError{What: trust.WhatApproval, Version: v, Reason: fmt.Sprintf("approves targets v%d (its header says v%d), but this repository would sign v%d now: it was made against another state of the repository", v, af.Approval.TargetsVersion, p.NewVersion)}
	}
	now := time.Now()
	want, cosignPub, err := p.buildTargets(now, af.Attestations)
	if err != nil {
		return nil, err
	}
	if err := sameSigned(want, tg, now); err != nil {
		return nil, &trust.VerificationError{What: trust.Targets, Version: v, Reason: "the approval's targets differ from what this repository builds from the bundle: " + err.Error()}
	}
	if !bytes.Equal(cosignPub, af.CosignPub) {
		return nil, &trust.VerificationError{What: trust.WhatApproval, Version: v, Reason: "the approval's cosign.pub is not this root's targets keys"}
	}
	return tg, nil
}

// sameSigned checks that a partial approval's targets are everything this
// repository builds from the bundle, not only the same target files: the
// holders who add their signatures sign the earlier holder's bytes, so a
// custom field (the bundle binding, attachments, upstream), a delegation,
// an unknown field or an expiry they were not shown would otherwise pass
// on one holder's word. The expiry alone may differ (the earlier sitting
// was earlier): never later than a signing now would set, never past.
func sameSigned(want, got *metadata.Metadata[metadata.TargetsType], now time.Time) error {
	if err := sameTargets(want, got); err != nil {
		return err
	}
	if got.Signed.Expires.After(want.Signed.Expires) {
		return fmt.Errorf("they expire %s, later than signing now would set (%s)", got.Signed.Expires.UTC().Format(time.RFC3339), want.Signed.Expires.UTC().Format(time.RFC3339))
	}
	if !got.Signed.Expires.After(now) {
		return fmt.Errorf("they expired %s", got.Signed.Expires.UTC().Format(time.RFC3339))
	}
	w := want.Signed
	w.Expires = got.Signed.Expires
	a, errA := decodedJSON(w)
	b, errB := decodedJSON(got.Signed)
	if errA != nil || errB != nil {
		return fmt.Errorf("comparing targets: %v %v", errA, errB)
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Errorf("a field other than the target files differs (custom, delegations or another field)")
	}
	return nil
}

// decodedJSON is v as generic JSON, so that key order and spacing of a
// round trip through a file do not count as differences.
func decodedJSON(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(raw, &out)
}

// ApprovalState is what inspect shows of an approval.
type ApprovalState struct {
	Bundle         bundle.BundleRef `json:"bundle"`
	Created        time.Time        `json:"created"`
	Tool           string           `json:"tool"`
	TargetsVersion int64            `json:"targets_version"`
	Roots          []int64          `json:"root_versions"`
	Cosign         int              `json:"cosign_signatures"`
	// Checked is true when State was verified against a repository's root;
	// otherwise State is what the approval says of itself.
	Checked  bool                  `json:"checked"`
	Complete bool                  `json:"complete"`
	State    *trust.SignatureState `json:"state"`
}

// InspectApproval reports an approval's state: with dir, every targets
// signature verified against that repository's root (after the root
// versions the approval carries); without, what the approval says.
func InspectApproval(ctx context.Context, af *bundle.ApprovalFile, dir string) (*ApprovalState, error) {
	a := af.Approval
	s := &ApprovalState{Bundle: a.Bundle, Created: a.Created, Tool: a.Tool, TargetsVersion: a.TargetsVersion, Cosign: len(a.Signatures)}
	for _, r := range af.Roots {
		s.Roots = append(s.Roots, r.Version)
	}
	tg, err := metadata.Targets().FromBytes(af.Targets)
	if err != nil {
		return nil, &trust.VerificationError{What: trust.Targets, Reason: "the approval's targets.json does not parse", Err: err}
	}
	if dir == "" {
		s.State = &trust.SignatureState{SignedBy: []string{}, MaySign: []string{}}
		for _, sig := range tg.Signatures {
			s.State.SignedBy = append(s.State.SignedBy, sig.KeyID)
		}
		if p := a.Partial; p != nil {
			s.State.Threshold, s.State.MaySign, s.State.Missing = p.Threshold, p.MaySign, p.Missing
		}
		s.Complete = a.Partial == nil
		return s, nil
	}
	st, err := trust.LoadState(ctx, dir)
	if err != nil {
		return nil, err
	}
	root, _, err := st.AcceptRoots(af.Roots)
	if err != nil {
		return nil, err
	}
	if s.State, err = trust.CheckSignatures(root, trust.Targets, tg); err != nil {
		return nil, err
	}
	s.Checked, s.Complete = true, s.State.Complete()
	return s, nil
}
