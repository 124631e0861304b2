package ceremony

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// RotateOptions describe the next root version.
type RotateOptions struct {
	Dir string
	// AddRootKeys and RemoveRootKeys (key IDs) change the root role's keys.
	AddRootKeys    []*hsm.Key
	RemoveRootKeys []string
	// RootThreshold sets the root threshold; 0 keeps it.
	RootThreshold int
	// Expiry is how long the new root lasts. Zero: DefaultExpiry (365 days).
	Expiry time.Duration
	// Keys sign the new root: a threshold of the current root's keys and a
	// threshold of the new root's keys (TUF spec 5.3.4).
	Keys             []*hsm.Key
	Now              time.Time
	AttestationRoots *x509.CertPool
	AllowUnattested  bool
}

// RotateResult is what a rotation leaves for the paper record.
type RotateResult struct {
	Version        int64    `json:"version"`
	RootSHA256     string   `json:"root_sha256"`
	RootKeys       []string `json:"root_keys"`
	Threshold      int      `json:"threshold"`
	SignedBy       []string `json:"signed_by"`
	Expires        string   `json:"expires"`
	TranscriptHead string   `json:"transcript_sha256"`
}

// Rotate makes root version N+1 in the signer's repository: root keys added
// or removed, a new threshold, a new expiry (a rotation that changes no key
// renews the root). It must be signed by the current root's threshold and
// by the new root's own; it is verified as a client would update to it,
// then published and pinned, and the steps go into the transcript. The
// next approval carries it to the isolated side. Targets, snapshot and
// timestamp keys are not rotated here.
func Rotate(ctx context.Context, o RotateOptions) (*RotateResult, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if o.Expiry == 0 {
		o.Expiry = trust.DefaultExpiry()[trust.Root]
	}
	unlock, err := trust.Lock(ctx, o.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := trust.LoadState(ctx, o.Dir)
	if err != nil {
		return nil, err
	}
	cur := st.Root
	b, err := cur.ToBytes(false)
	if err != nil {
		return nil, err
	}
	next, err := metadata.Root().FromBytes(b) // a deep copy
	if err != nil {
		return nil, err
	}
	next.ClearSignatures()
	next.Signed.Version = cur.Signed.Version + 1
	next.Signed.Expires = trust.ExpiresAt(now, o.Expiry)

	t, err := openTranscript(filepath.Join(o.Dir, trust.TranscriptFile), func() time.Time { return now })
	if err != nil {
		return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: err.Error()}
	}
	if err := t.add(Entry{Step: "rotate.start", Version: next.Signed.Version, Detail: map[string]any{"expires": next.Signed.Expires}}); err != nil {
		return nil, err
	}
	online := map[string]bool{}
	for _, role := range []string{trust.Snapshot, trust.Timestamp} {
		ids, _ := trust.RoleKeyIDs(cur, role)
		for _, id := range ids {
			online[id] = true
		}
	}
	for _, k := range o.AddRootKeys {
		id, err := trust.KeyID(k.Public)
		if err != nil {
			return nil, err
		}
		if online[id] {
			return nil, fmt.Errorf("key %s is an online (snapshot/timestamp) key: it must not also be a root key", id)
		}
		detail := map[string]any{"source": k.URI.String()}
		if pemPub, err := cryptoutils.MarshalPublicKeyToPEM(k.Public); err == nil {
			detail["public_key"] = string(pemPub)
		}
		if err := recordAttestation(k, id, o.AttestationRoots, o.AllowUnattested, detail); err != nil {
			return nil, err
		}
		tk, err := metadata.KeyFromPublicKey(k.Public)
		if err != nil {
			return nil, err
		}
		if err := next.Signed.AddKey(tk, trust.Root); err != nil {
			return nil, err
		}
		if err := t.add(Entry{Step: "rotate.add", Role: trust.Root, KeyIDs: []string{id}, Detail: detail}); err != nil {
			return nil, err
		}
	}
	for _, id := range o.RemoveRootKeys {
		if err := next.Signed.RevokeKey(id, trust.Root); err != nil {
			return nil, fmt.Errorf("removing root key %s: %w", id, err)
		}
		if err := t.add(Entry{Step: "rotate.remove", Role: trust.Root, KeyIDs: []string{id}}); err != nil {
			return nil, err
		}
	}
	if o.RootThreshold > 0 {
		next.Signed.Roles[trust.Root].Threshold = o.RootThreshold
	}
	ids, threshold := trust.RoleKeyIDs(next, trust.Root)
	if threshold < 1 || threshold > len(ids) {
		return nil, fmt.Errorf("root: threshold %d is impossible with %d key(s)", threshold, len(ids))
	}
	oldIDs, _ := trust.RoleKeyIDs(cur, trust.Root)
	res := &RotateResult{Version: next.Signed.Version, RootKeys: ids, Threshold: threshold, Expires: next.Signed.Expires.Format(time.RFC3339)}
	for _, k := range o.Keys {
		id, err := trust.KeyID(k.Public)
		if err != nil {
			return nil, err
		}
		if !contains(oldIDs, id) && !contains(ids, id) {
			return nil, fmt.Errorf("key %s (%s) is a root key of neither root v%d nor v%d", id, k.URI, cur.Signed.Version, next.Signed.Version)
		}
		if !k.Private() {
			return nil, fmt.Errorf("%s: only a public key is here: the holder's key must sign", k.URI)
		}
		if err := trust.Sign(next, trust.Root, k.Signer); err != nil {
			return nil, err
		}
		res.SignedBy = append(res.SignedBy, id)
		if err := t.add(Entry{Step: "sign", Role: trust.Root, Version: next.Signed.Version, KeyIDs: []string{id}}); err != nil {
			return nil, err
		}
	}
	// What a client does on meeting this root: verified by the trusted
	// root's threshold and by its own.
	curBytes := st.RootRaw[cur.Signed.Version]
	nextBytes, err := next.ToBytes(true)
	if err != nil {
		return nil, err
	}
	if _, _, err := trust.UpdateRoots(curBytes, trust.RootFile{Version: next.Signed.Version, Bytes: nextBytes}); err != nil {
		_, oldThreshold := trust.RoleKeyIDs(cur, trust.Root)
		return nil, &trust.VerificationError{What: trust.Root, Version: next.Signed.Version, KeyIDs: res.SignedBy,
			Reason: fmt.Sprintf("needs %d signature(s) by root v%d's keys and %d by its own; bring more holders (--key)", oldThreshold, cur.Signed.Version, threshold), Err: errors.Unwrap(err)}
	}
	if err := trust.Publish(ctx, o.Dir, trust.Publication{Roots: []*metadata.Metadata[metadata.RootType]{next}}); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(nextBytes)
	res.RootSHA256 = hex.EncodeToString(sum[:])
	name := filepath.ToSlash(filepath.Join(trust.MetadataDir, trust.FileName(trust.Root, next.Signed.Version)))
	if err := t.add(Entry{Step: "rotate.published", Version: next.Signed.Version, Files: map[string]string{name: res.RootSHA256}}); err != nil {
		return nil, err
	}
	if err := t.write(filepath.Join(o.Dir, trust.TranscriptFile)); err != nil {
		return nil, err
	}
	res.TranscriptHead = t.head()
	return res, nil
}

// recordAttestation verifies a hardware key's attestation and puts it into
// a transcript entry's detail; one that does not verify is refused unless
// allowed (then recorded as refused). Keys without attestation pass.
func recordAttestation(k *hsm.Key, id string, roots *x509.CertPool, allow bool, detail map[string]any) error {
	if k.Attest == nil {
		return nil
	}
	a, err := k.Attest(roots)
	if err != nil {
		if !allow {
			return &trust.VerificationError{What: trust.Root, KeyIDs: []string{id}, Reason: fmt.Sprintf("key %s: its attestation does not verify (pass --allow-unattested to accept it anyway)", k.URI), Err: err}
		}
		detail["attestation_refused"] = err.Error()
		return nil
	}
	detail["attestation"] = a
	return nil
}
