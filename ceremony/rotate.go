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
	// 1. Root N+1: a copy of root N with the new version and expiry.
	cur := st.Root
	next, err := nextRoot(cur, trust.ExpiresAt(now, o.Expiry))
	if err != nil {
		return nil, err
	}
	t, err := openTranscript(filepath.Join(o.Dir, trust.TranscriptFile), func() time.Time { return now })
	if err != nil {
		return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: err.Error()}
	}
	if err := t.add(Entry{Step: "rotate.start", Version: next.Signed.Version, Detail: map[string]any{"expires": next.Signed.Expires}}); err != nil {
		return nil, err
	}
	// 2. Its root keys and threshold.
	if err := changeRootKeys(cur, next, o, t); err != nil {
		return nil, err
	}
	ids, threshold := trust.RoleKeyIDs(next, trust.Root)
	if threshold < 1 || threshold > len(ids) {
		return nil, fmt.Errorf("root: threshold %d is impossible with %d key(s)", threshold, len(ids))
	}
	res := &RotateResult{Version: next.Signed.Version, RootKeys: ids, Threshold: threshold, Expires: next.Signed.Expires.Format(time.RFC3339)}
	// 3. Signatures by the holders present.
	if err := signNextRoot(cur, next, o.Keys, t, res); err != nil {
		return nil, err
	}
	// 4. Verified as a client would update to it, then published.
	if err := publishRotation(ctx, o.Dir, st, next, t, res); err != nil {
		return nil, err
	}
	return res, nil
}

// nextRoot is a deep copy of cur with the next version, expiring at
// expires, and no signatures.
func nextRoot(cur *metadata.Metadata[metadata.RootType], expires time.Time) (*metadata.Metadata[metadata.RootType], error) {
	b, err := cur.ToBytes(false)
	if err != nil {
		return nil, err
	}
	next, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, err
	}
	next.ClearSignatures()
	next.Signed.Version = cur.Signed.Version + 1
	next.Signed.Expires = expires
	return next, nil
}

// changeRootKeys adds and removes next's root keys and sets its threshold
// as o asks, recording each change. A root key must not be an online key.
func changeRootKeys(cur, next *metadata.Metadata[metadata.RootType], o RotateOptions, t *transcript) error {
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
			return err
		}
		if online[id] {
			return fmt.Errorf("key %s is an online (snapshot/timestamp) key: it must not also be a root key", id)
		}
		detail := map[string]any{"source": k.URI.String()}
		if pemPub, err := cryptoutils.MarshalPublicKeyToPEM(k.Public); err == nil {
			detail["public_key"] = string(pemPub)
		}
		if err := recordAttestation(k, id, o.AttestationRoots, o.AllowUnattested, detail); err != nil {
			return err
		}
		tk, err := metadata.KeyFromPublicKey(k.Public)
		if err != nil {
			return err
		}
		if err := next.Signed.AddKey(tk, trust.Root); err != nil {
			return err
		}
		if err := t.add(Entry{Step: "rotate.add", Role: trust.Root, KeyIDs: []string{id}, Detail: detail}); err != nil {
			return err
		}
	}
	for _, id := range o.RemoveRootKeys {
		if err := next.Signed.RevokeKey(id, trust.Root); err != nil {
			return fmt.Errorf("removing root key %s: %w", id, err)
		}
		if err := t.add(Entry{Step: "rotate.remove", Role: trust.Root, KeyIDs: []string{id}}); err != nil {
			return err
		}
	}
	if o.RootThreshold > 0 {
		next.Signed.Roles[trust.Root].Threshold = o.RootThreshold
	}
	return nil
}

// signNextRoot signs next with each of keys, which must be root keys of
// cur or of next with their private halves here, recording each signature.
func signNextRoot(cur, next *metadata.Metadata[metadata.RootType], keys []*hsm.Key, t *transcript, res *RotateResult) error {
	oldIDs, _ := trust.RoleKeyIDs(cur, trust.Root)
	for _, k := range keys {
		id, err := trust.KeyID(k.Public)
		if err != nil {
			return err
		}
		if !contains(oldIDs, id) && !contains(res.RootKeys, id) {
			return fmt.Errorf("key %s (%s) is a root key of neither root v%d nor v%d", id, k.URI, cur.Signed.Version, next.Signed.Version)
		}
		if !k.Private() {
			return fmt.Errorf("%s: only a public key is here: the holder's key must sign", k.URI)
		}
		if err := trust.Sign(next, trust.Root, k.Signer); err != nil {
			return err
		}
		res.SignedBy = append(res.SignedBy, id)
		if err := t.add(Entry{Step: "sign", Role: trust.Root, Version: next.Signed.Version, KeyIDs: []string{id}}); err != nil {
			return err
		}
	}
	return nil
}

// publishRotation checks next as a client meeting it would (verified by
// the trusted root's threshold and by its own), publishes and pins it, and
// closes the transcript.
func publishRotation(ctx context.Context, dir string, st *trust.State, next *metadata.Metadata[metadata.RootType], t *transcript, res *RotateResult) error {
	cur := st.Root
	curBytes := st.RootRaw[cur.Signed.Version]
	nextBytes, err := next.ToBytes(true)
	if err != nil {
		return err
	}
	if _, _, err := trust.UpdateRoots(curBytes, trust.RootFile{Version: next.Signed.Version, Bytes: nextBytes}); err != nil {
		_, oldThreshold := trust.RoleKeyIDs(cur, trust.Root)
		return &trust.VerificationError{What: trust.Root, Version: next.Signed.Version, KeyIDs: res.SignedBy,
			Reason: fmt.Sprintf("needs %d signature(s) by root v%d's keys and %d by its own: bring more holders", oldThreshold, cur.Signed.Version, res.Threshold), Err: errors.Unwrap(err)}
	}
	if err := trust.Publish(ctx, dir, trust.Publication{Roots: []*metadata.Metadata[metadata.RootType]{next}}); err != nil {
		return err
	}
	sum := sha256.Sum256(nextBytes)
	res.RootSHA256 = hex.EncodeToString(sum[:])
	name := filepath.ToSlash(filepath.Join(trust.MetadataDir, trust.FileName(trust.Root, next.Signed.Version)))
	if err := t.add(Entry{Step: "rotate.published", Version: next.Signed.Version, Files: map[string]string{name: res.RootSHA256}}); err != nil {
		return err
	}
	if err := t.write(filepath.Join(dir, trust.TranscriptFile)); err != nil {
		return err
	}
	res.TranscriptHead = t.head()
	return nil
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
			return &trust.VerificationError{What: trust.Root, KeyIDs: []string{id}, Reason: fmt.Sprintf("key %s: its attestation does not verify", k.URI), Err: err}
		}
		detail["attestation_refused"] = err.Error()
		return nil
	}
	detail["attestation"] = a
	return nil
}
