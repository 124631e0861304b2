package ceremony

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
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
	// AddTargetsKeys add targets keys; TargetsThreshold sets the targets
	// threshold (0 keeps it). When the current targets no longer verify
	// under the new root, Keys must hold the new targets threshold: the
	// targets are re-signed in the same sitting.
	AddTargetsKeys   []*hsm.Key
	TargetsThreshold int
	// SnapshotKey and TimestampKey, when set, replace that role's keys
	// (usually public only: the private halves live on the isolated side).
	SnapshotKey, TimestampKey *hsm.Key
	// RemoveKeys (key IDs) leave every role that names them.
	RemoveKeys []string
	// Expiry is how long the new root lasts. Zero: DefaultExpiry (365 days).
	Expiry time.Duration
	// TargetsExpiry is how long re-signed targets last. Zero: DefaultExpiry.
	TargetsExpiry time.Duration
	// Keys sign the new root: a threshold of the current root's keys and a
	// threshold of the new root's keys (TUF spec 5.3.4); and, when targets
	// must be re-signed, a threshold of the new targets keys.
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
	// Roles are every role's keys and threshold in the new root.
	Roles map[string]RoleKeys `json:"roles"`
	// Changed names the roles whose keys or threshold changed.
	Changed []string `json:"changed"`
	// TargetsVersion, when set, is the targets version re-signed under the
	// new targets keys.
	TargetsVersion  int64    `json:"targets_version,omitempty"`
	TargetsSHA256   string   `json:"targets_sha256,omitempty"`
	TargetsSignedBy []string `json:"targets_signed_by,omitempty"`
}

// rotation is one sitting's work in progress.
type rotation struct {
	o       RotateOptions
	now     time.Time
	st      *trust.State
	next    *metadata.Metadata[metadata.RootType]
	targets *metadata.Metadata[metadata.TargetsType] // re-signed, or nil
	t       *transcript
	res     *RotateResult
}

// Rotate makes root version N+1 in the signer's repository: keys of any
// role added, replaced or removed, new thresholds, a new expiry (a rotation
// that changes no key renews the root). It must be signed by the current
// root's threshold and by the new root's own. When the current targets no
// longer verify under it (new targets keys or threshold), the targets are
// re-signed by the new targets keys in the same sitting. Everything is
// verified as a client would update to it, then published and pinned, and
// the steps go into the transcript. The next approval carries it to the
// isolated side.
func Rotate(ctx context.Context, o RotateOptions) (*RotateResult, error) {
	r := &rotation{o: o, now: o.Now}
	if r.now.IsZero() {
		r.now = time.Now()
	}
	unlock, err := trust.Lock(ctx, o.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if r.st, err = trust.LoadState(ctx, o.Dir); err != nil {
		return nil, err
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	for _, step := range []func() error{r.changeKeys, r.checkRoles, r.signRoot, r.verifyRoot, r.resignTargets} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return r.publish(ctx)
}

// start copies the current root into version N+1 and opens the transcript.
func (r *rotation) start() error {
	cur := r.st.Root
	b, err := cur.ToBytes(false)
	if err != nil {
		return err
	}
	if r.next, err = metadata.Root().FromBytes(b); err != nil { // a deep copy
		return err
	}
	exp := r.o.Expiry
	if exp == 0 {
		exp = trust.DefaultExpiry()[trust.Root]
	}
	r.next.ClearSignatures()
	r.next.Signed.Version = cur.Signed.Version + 1
	r.next.Signed.Expires = trust.ExpiresAt(r.now, exp)
	r.t, err = openTranscript(filepath.Join(r.o.Dir, trust.TranscriptFile), func() time.Time { return r.now })
	if err != nil {
		return &trust.VerificationError{What: trust.WhatTranscript, Reason: err.Error()}
	}
	r.t.sealWith(r.o.Keys...)
	r.res = &RotateResult{Version: r.next.Signed.Version, Expires: r.next.Signed.Expires.Format(time.RFC3339), Roles: map[string]RoleKeys{}}
	return r.t.add(Entry{Step: "rotate.start", Version: r.next.Signed.Version, Detail: map[string]any{"expires": r.next.Signed.Expires}})
}

// changeKeys applies the added, replaced and removed keys and the new
// thresholds to the next root, recording each in the transcript.
func (r *rotation) changeKeys() error {
	for _, c := range []struct {
		role    string
		keys    []*hsm.Key
		replace bool
	}{
		{trust.Root, r.o.AddRootKeys, false},
		{trust.Targets, r.o.AddTargetsKeys, false},
		{trust.Snapshot, nonNil(r.o.SnapshotKey), true},
		{trust.Timestamp, nonNil(r.o.TimestampKey), true},
	} {
		for _, k := range c.keys {
			if err := r.addKey(c.role, k, c.replace); err != nil {
				return err
			}
		}
	}
	for _, id := range r.o.RemoveRootKeys {
		if err := r.removeKey(trust.Root, id); err != nil {
			return err
		}
	}
	for _, id := range r.o.RemoveKeys {
		removed := false
		for _, role := range []string{trust.Root, trust.Targets, trust.Snapshot, trust.Timestamp} {
			if ids, _ := trust.RoleKeyIDs(r.next, role); slices.Contains(ids, id) {
				if err := r.removeKey(role, id); err != nil {
					return err
				}
				removed = true
			}
		}
		if !removed {
			return fmt.Errorf("key %s: no role of root v%d names this key ID, so it cannot be removed", id, r.st.Root.Signed.Version)
		}
	}
	for _, c := range []struct {
		role string
		th   int
	}{{trust.Root, r.o.RootThreshold}, {trust.Targets, r.o.TargetsThreshold}} {
		role, th := c.role, c.th
		if th > 0 && th != r.next.Signed.Roles[role].Threshold {
			r.next.Signed.Roles[role].Threshold = th
			if err := r.t.add(Entry{Step: "rotate.threshold", Role: role, Version: r.next.Signed.Version, Detail: map[string]any{"threshold": th}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// addKey adds k to role; replace first removes the role's other keys (an
// online role has one key). A key the role already has is refused when
// adding, and leaves the role as it is when replacing.
func (r *rotation) addKey(role string, k *hsm.Key, replace bool) error {
	id, err := trust.KeyID(k.Public)
	if err != nil {
		return err
	}
	ids, _ := trust.RoleKeyIDs(r.next, role)
	if slices.Contains(ids, id) {
		if replace {
			return nil
		}
		return fmt.Errorf("key %s (%s) is already a %s key of root v%d", id, k.URI, role, r.st.Root.Signed.Version)
	}
	if replace {
		for _, old := range ids {
			if err := r.removeKey(role, old); err != nil {
				return err
			}
		}
	}
	detail := map[string]any{"source": k.URI.String()}
	if pemPub, err := cryptoutils.MarshalPublicKeyToPEM(k.Public); err == nil {
		detail["public_key"] = string(pemPub)
	}
	if err := recordAttestation(k, role, id, r.o.AttestationRoots, r.o.AllowUnattested, detail); err != nil {
		return err
	}
	tk, err := metadata.KeyFromPublicKey(k.Public)
	if err != nil {
		return err
	}
	if err := r.next.Signed.AddKey(tk, role); err != nil {
		return fmt.Errorf("adding %s key %s: %w", role, id, err)
	}
	return r.t.add(Entry{Step: "rotate.add", Role: role, KeyIDs: []string{id}, Detail: detail})
}

func (r *rotation) removeKey(role, id string) error {
	if err := r.next.Signed.RevokeKey(id, role); err != nil {
		return fmt.Errorf("removing %s key %s: %w", role, id, err)
	}
	return r.t.add(Entry{Step: "rotate.remove", Role: role, KeyIDs: []string{id}})
}

// checkRoles refuses a next root a client could not use: a role without
// keys, an impossible threshold, or an offline key also made an online one.
func (r *rotation) checkRoles() error {
	roles := []string{trust.Root, trust.Targets, trust.Snapshot, trust.Timestamp}
	for _, role := range roles {
		ids, th := trust.RoleKeyIDs(r.next, role)
		if th < 1 || th > len(ids) {
			return fmt.Errorf("%s: threshold %d is impossible with %d key(s) in root v%d", role, th, len(ids), r.next.Signed.Version)
		}
		rk := RoleKeys{Threshold: th, KeyIDs: ids}
		old, oldTh := trust.RoleKeyIDs(r.st.Root, role)
		if oldTh != th || !sameSet(old, ids) {
			r.res.Changed = append(r.res.Changed, role)
		}
		r.res.Roles[role] = rk
	}
	for _, off := range roles[:2] {
		ids, _ := trust.RoleKeyIDs(r.next, off)
		for _, on := range roles[2:] {
			onIDs, _ := trust.RoleKeyIDs(r.next, on)
			for _, id := range ids {
				if slices.Contains(onIDs, id) {
					return fmt.Errorf("key %s would be a %s key and a %s key: an offline key must not also be an online key", id, off, on)
				}
			}
		}
	}
	r.res.RootKeys, r.res.Threshold = r.res.Roles[trust.Root].KeyIDs, r.res.Roles[trust.Root].Threshold
	return nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// signRoot signs the next root with every key given that is a root key of
// the current or the next root. A key that is neither, and is no targets
// key of the next root either, is refused.
func (r *rotation) signRoot() error {
	oldIDs, _ := trust.RoleKeyIDs(r.st.Root, trust.Root)
	newIDs, _ := trust.RoleKeyIDs(r.next, trust.Root)
	tgIDs, _ := trust.RoleKeyIDs(r.next, trust.Targets)
	for _, k := range r.o.Keys {
		id, err := trust.KeyID(k.Public)
		if err != nil {
			return err
		}
		isRoot := slices.Contains(oldIDs, id) || slices.Contains(newIDs, id)
		if !isRoot && !slices.Contains(tgIDs, id) {
			return fmt.Errorf("key %s (%s) is a root key of neither root v%d nor v%d, nor a targets key of v%d", id, k.URI, r.st.Root.Signed.Version, r.next.Signed.Version, r.next.Signed.Version)
		}
		if !k.Private() {
			return fmt.Errorf("%s: only a public key is here: the holder's key must sign", k.URI)
		}
		if !isRoot {
			continue
		}
		if err := trust.Sign(r.next, trust.Root, k.Signer); err != nil {
			return err
		}
		r.res.SignedBy = append(r.res.SignedBy, id)
		if err := r.t.add(Entry{Step: "sign", Role: trust.Root, Version: r.next.Signed.Version, KeyIDs: []string{id}}); err != nil {
			return err
		}
	}
	return nil
}

// verifyRoot does what a client does on meeting the next root: it must be
// signed by the trusted root's threshold and by its own.
func (r *rotation) verifyRoot() error {
	cur := r.st.Root
	nextBytes, err := r.next.ToBytes(true)
	if err != nil {
		return err
	}
	if _, _, err := trust.UpdateRoots(r.st.RootRaw[cur.Signed.Version], trust.RootFile{Version: r.next.Signed.Version, Bytes: nextBytes}); err != nil {
		_, oldTh := trust.RoleKeyIDs(cur, trust.Root)
		return &trust.VerificationError{What: trust.Root, Version: r.next.Signed.Version, KeyIDs: r.res.SignedBy,
			Reason: fmt.Sprintf("needs %d signature(s) by root v%d's keys and %d by its own: bring more holders", oldTh, cur.Signed.Version, r.res.Threshold), Err: errors.Unwrap(err)}
	}
	r.res.RootSHA256 = sha256Hex(nextBytes)
	return nil
}
