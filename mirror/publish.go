package mirror

import (
	"context"
	"crypto"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// targetsKeys maps root's targets key IDs to their public keys.
func targetsKeys(root *metadata.Metadata[metadata.RootType]) (map[string]crypto.PublicKey, error) {
	keys, err := trust.RoleKeys(root, trust.Targets)
	if err != nil {
		return nil, err
	}
	out := map[string]crypto.PublicKey{}
	for _, k := range keys {
		out[k.ID] = k.Public
	}
	return out, nil
}

// nextPublication builds and signs what the import will publish: the
// approved targets, the target files (each image's manifest, cosign.pub),
// snapshot+1 and timestamp+1; and verifies all of it, with what is already
// published, exactly as a TUF client would.
func nextPublication(ctx context.Context, o ImportOptions, st *trust.State, p *plan, now time.Time) (*trust.Publication, error) {
	exp := trust.DefaultExpiry()
	snap := trust.NextSnapshot(st.Snapshot, p.targets.Signed.Version, trust.ExpiresAt(now, exp[trust.Snapshot]))
	if err := trust.Sign(snap, trust.Snapshot, o.SnapshotKey.Signer); err != nil {
		return nil, err
	}
	ts := trust.NextTimestamp(st.Timestamp, snap.Signed.Version, trust.ExpiresAt(now, exp[trust.Timestamp]))
	if err := trust.Sign(ts, trust.Timestamp, o.TimestampKey.Signer); err != nil {
		return nil, err
	}
	pub := &trust.Publication{Roots: p.roots, Targets: p.targets, Snapshot: snap, Timestamp: ts, TargetFiles: map[string][]byte{bundle.CosignPubTarget: p.cosignPub}}
	if p.attestations != nil {
		pub.TargetFiles[trust.AttestationsTarget] = p.attestations
	}
	for _, ip := range p.images {
		pub.TargetFiles[ip.img.Name] = ip.manifests[len(ip.manifests)-1].raw
	}
	if err := trust.VerifyPublication(ctx, o.Repo, *pub, now); err != nil {
		return nil, fmt.Errorf("the repository this import would publish does not verify: %w", err)
	}
	return pub, nil
}

// checkOnlineKeys refuses snapshot and timestamp keys that the newest root
// (carried by this approval, or already trusted) does not name: after a
// rotation of an online key the refusal names the rotation and the new key.
func checkOnlineKeys(st *trust.State, carried []*metadata.Metadata[metadata.RootType], o ImportOptions) error {
	chain := append(st.Chain(), carried...)
	for _, k := range []struct {
		role string
		key  *hsm.Key
	}{{trust.Snapshot, o.SnapshotKey}, {trust.Timestamp, o.TimestampKey}} {
		if err := trust.CheckRoleKey(chain, k.role, k.key.Public); err != nil {
			if len(carried) > 0 {
				return fmt.Errorf("%w (root v%d arrives with this approval)", err, carried[len(carried)-1].Signed.Version)
			}
			return err
		}
	}
	return nil
}

// checkAttested refuses, when o asks for it, targets signed by a key whose
// hardware attestation the approval's ceremony/attestations.json does not
// record, or records but does not verify against o.AttestationRoots.
func checkAttested(st *trust.State, p *plan, o ImportOptions) error {
	if !o.RequireAttestation {
		return nil
	}
	if p.attestations == nil {
		return &trust.VerificationError{What: trust.WhatAttestation, Version: p.targets.Signed.Version, Reason: fmt.Sprintf("the approval carries no %s: no targets key's hardware attestation is recorded", trust.AttestationsTarget)}
	}
	att, err := trust.ParseAttestations(p.attestations)
	if err != nil {
		return err
	}
	root := st.Root
	if n := len(p.roots); n > 0 {
		root = p.roots[n-1]
	}
	return trust.RequireAttested(root, trust.Targets, p.targets, att, o.AttestationRoots)
}
