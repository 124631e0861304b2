package ceremony

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// InitOptions describe a new root of trust.
type InitOptions struct {
	Dir              string
	RootKeys         []*hsm.Key
	RootThreshold    int
	TargetsKeys      []*hsm.Key
	TargetsThreshold int
	// SnapshotKey and TimestampKey are usually public-only here: their
	// private halves live in the isolated network, which signs the first
	// snapshot and timestamp.
	SnapshotKey  *hsm.Key
	TimestampKey *hsm.Key
	// Expiry overrides trust.DefaultExpiry per role.
	Expiry trust.Expiry
	// Force replaces an existing repository (its metadata, targets,
	// transcript and pinned root). Nothing else in Dir is touched.
	Force bool
	// Now is the ceremony's clock. Zero: time.Now().
	Now time.Time
	// Tool is recorded in the transcript (name and version).
	Tool string
	// AttestationRoots verify hardware keys' attestations; nil: the
	// vendor's roots (Yubico's PIV CA).
	AttestationRoots *x509.CertPool
	// AllowUnattested accepts a hardware key whose attestation does not
	// verify (recorded as such in the transcript).
	AllowUnattested bool
}

// RoleKeys is one role's keys as set in root v1.
type RoleKeys struct {
	Threshold int      `json:"threshold"`
	KeyIDs    []string `json:"keyids"`
	Sources   []string `json:"sources"` // key URIs, without secrets
	SignedBy  []string `json:"signed_by"`
	// Attestations, by key ID, for hardware keys that proved where they
	// were generated.
	Attestations map[string]*hsm.Attestation `json:"attestations,omitempty"`
}

// InitResult is what a ceremony leaves for the paper record.
type InitResult struct {
	Dir        string              `json:"repo"`
	Roles      map[string]RoleKeys `json:"roles"`
	RootSHA256 string              `json:"root_sha256"`
	Files      map[string]string   `json:"files"` // published name → sha256
	// Pending lists roles not published because their private keys are not
	// here (signed later on the isolated side).
	Pending []string `json:"pending"`
	// Missing, when set, says the ceremony is not complete: role → how many
	// more signatures it needs and from which keys (ceremony sign).
	Missing        map[string]Missing `json:"missing,omitempty"`
	TranscriptHead string             `json:"transcript_sha256"`
}

// Init creates root v1, targets v1 (empty), and snapshot v1 and timestamp v1
// when their private keys are present; verifies the result as a client
// would before writing anything; publishes it atomically; pins root v1 as
// the trusted root; and appends the steps to transcript.jsonl.
func Init(ctx context.Context, o InitOptions) (*InitResult, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	exp := trust.DefaultExpiry()
	for r, d := range o.Expiry {
		exp[r] = d
	}
	roles := []initRole{
		{trust.Root, o.RootKeys, o.RootThreshold},
		{trust.Targets, o.TargetsKeys, o.TargetsThreshold},
		{trust.Snapshot, nonNil(o.SnapshotKey), 1},
		{trust.Timestamp, nonNil(o.TimestampKey), 1},
	}

	// 1. Refuse a bad ceremony before touching the disk.
	if err := checkRoles(roles); err != nil {
		return nil, err
	}
	att, err := attestRoles(roles, o.AttestationRoots, o.AllowUnattested)
	if err != nil {
		return nil, err
	}
	if trust.Exists(o.Dir) && !o.Force {
		return nil, fmt.Errorf("%s %w: refusing to replace a root of trust", o.Dir, ErrRepositoryExists)
	}
	if hasPending(o.Dir) && !o.Force {
		return nil, fmt.Errorf("%w in %s: it needs the missing signatures, or Force to start over", ErrPending, o.Dir)
	}

	// 2. Root v1 with every role's keys, then the first version of each
	// role, signed by the private keys present; each step in the transcript.
	t := &transcript{now: func() time.Time { return now }}
	t.sealWith(append(append([]*hsm.Key{o.SnapshotKey, o.TimestampKey}, o.RootKeys...), o.TargetsKeys...)...)
	res := &InitResult{Dir: o.Dir, Roles: map[string]RoleKeys{}, Files: map[string]string{}, Pending: []string{}}
	if err := t.add(Entry{Step: "init.start", Detail: map[string]any{"tool": o.Tool, "expiry": expiryStrings(exp)}}); err != nil {
		return nil, err
	}
	root := metadata.Root(trust.ExpiresAt(now, exp[trust.Root]))
	for _, r := range roles {
		if err := addRoleKeys(root, r, att, t, res); err != nil {
			return nil, err
		}
	}
	set, err := signFirstVersions(o, root, now, exp, t, res)
	if err != nil {
		return nil, err
	}

	// 3. Publish, or keep the ceremony pending for the holders to come.
	if err := writeInit(ctx, o, set, t, now); err != nil {
		return nil, err
	}
	return res, nil
}

// initRole is one role of a new root: its keys and threshold.
type initRole struct {
	name      string
	keys      []*hsm.Key
	threshold int
}

// checkRoles refuses roles without keys, impossible thresholds, a key given
// twice for a role, and an offline key reused as an online one.
func checkRoles(roles []initRole) error {
	ids := map[string]map[string]string{} // role → key ID → URI
	for _, r := range roles {
		if len(r.keys) == 0 {
			return fmt.Errorf("%s: no key given", r.name)
		}
		if r.threshold < 1 || r.threshold > len(r.keys) {
			return fmt.Errorf("%s: threshold %d is impossible with %d key(s): it must be between 1 and the number of keys", r.name, r.threshold, len(r.keys))
		}
		ids[r.name] = map[string]string{}
		for _, k := range r.keys {
			id, err := trust.KeyID(k.Public)
			if err != nil {
				return fmt.Errorf("%s key %s: %w", r.name, k.URI, err)
			}
			if prev, dup := ids[r.name][id]; dup {
				return fmt.Errorf("%s: the same key is given twice (%s and %s, key ID %s)", r.name, prev, k.URI, id)
			}
			ids[r.name][id] = k.URI.String()
		}
	}
	// An offline key reused as an online one would sit on a networked
	// machine.
	for _, off := range []string{trust.Root, trust.Targets} {
		for _, on := range []string{trust.Snapshot, trust.Timestamp} {
			for id := range ids[off] {
				if _, ok := ids[on][id]; ok {
					return fmt.Errorf("key %s is given for %s and for %s: an offline key must not also be an online key", id, off, on)
				}
			}
		}
	}
	return nil
}

// attestations are the hardware keys' proofs of where they were made, and
// why each key that was let through without one failed.
type attestations struct {
	ok      map[*hsm.Key]*hsm.Attestation
	refused map[*hsm.Key]string
}

// attestRoles verifies every hardware key's attestation: one that does not
// verify is refused unless allow is set.
func attestRoles(roles []initRole, roots *x509.CertPool, allow bool) (attestations, error) {
	att := attestations{ok: map[*hsm.Key]*hsm.Attestation{}, refused: map[*hsm.Key]string{}}
	for _, r := range roles {
		for _, k := range r.keys {
			if k.Attest == nil {
				continue
			}
			a, err := k.Attest(roots)
			if err != nil {
				if !allow {
					return att, &trust.VerificationError{What: r.name, Reason: fmt.Sprintf("key %s: its attestation does not verify", k.URI), Err: err}
				}
				att.refused[k] = err.Error()
				continue
			}
			att.ok[k] = a
		}
	}
	return att, nil
}

// addRoleKeys puts r's keys and threshold into root, records each key in
// the transcript (public key, source, attestation) and in res.
func addRoleKeys(root *metadata.Metadata[metadata.RootType], r initRole, att attestations, t *transcript, res *InitResult) error {
	rk := RoleKeys{Threshold: r.threshold}
	for _, k := range r.keys {
		tk, err := metadata.KeyFromPublicKey(k.Public)
		if err != nil {
			return err
		}
		if err := root.Signed.AddKey(tk, r.name); err != nil {
			return fmt.Errorf("adding %s key: %w", r.name, err)
		}
		id, _ := tk.ID()
		pemPub, err := cryptoutils.MarshalPublicKeyToPEM(k.Public)
		if err != nil {
			return err
		}
		rk.KeyIDs = append(rk.KeyIDs, id)
		rk.Sources = append(rk.Sources, k.URI.String())
		detail := map[string]any{"source": k.URI.String(), "public_key": string(pemPub), "private_here": k.Private()}
		if a := att.ok[k]; a != nil {
			detail["attestation"] = a
			if rk.Attestations == nil {
				rk.Attestations = map[string]*hsm.Attestation{}
			}
			rk.Attestations[id] = a
		}
		if why, ok := att.refused[k]; ok {
			detail["attestation_refused"] = why
		}
		if err := t.add(Entry{Step: "key", Role: r.name, KeyIDs: []string{id}, Detail: detail}); err != nil {
			return err
		}
	}
	root.Signed.Roles[r.name].Threshold = r.threshold
	res.Roles[r.name] = rk
	return nil
}

// signFirstVersions signs root v1 and targets v1 with the private keys
// present, and snapshot v1 and timestamp v1 when their keys are here;
// the roles whose keys are not are listed in res.Pending.
func signFirstVersions(o InitOptions, root *metadata.Metadata[metadata.RootType], now time.Time, exp trust.Expiry, t *transcript, res *InitResult) (*pendingSet, error) {
	if err := sign(root, trust.Root, o.RootKeys, t, res); err != nil {
		return nil, err
	}
	targets := metadata.Targets(trust.ExpiresAt(now, exp[trust.Targets]))
	if err := sign(targets, trust.Targets, o.TargetsKeys, t, res); err != nil {
		return nil, err
	}
	set := &pendingSet{Root: root, Targets: targets, Result: res}
	if !o.SnapshotKey.Private() {
		res.Pending = append(res.Pending, trust.Snapshot, trust.Timestamp)
		return set, nil
	}
	snap := trust.NextSnapshot(nil, targets.Signed.Version, trust.ExpiresAt(now, exp[trust.Snapshot]))
	if err := sign(snap, trust.Snapshot, []*hsm.Key{o.SnapshotKey}, t, res); err != nil {
		return nil, err
	}
	set.Snapshot = snap
	if !o.TimestampKey.Private() {
		res.Pending = append(res.Pending, trust.Timestamp)
		return set, nil
	}
	ts := trust.NextTimestamp(nil, snap.Signed.Version, trust.ExpiresAt(now, exp[trust.Timestamp]))
	if err := sign(ts, trust.Timestamp, []*hsm.Key{o.TimestampKey}, t, res); err != nil {
		return nil, err
	}
	set.Timestamp = ts
	return set, nil
}

// writeInit takes the repository lock, clears what Force replaces, and
// publishes a complete set; an incomplete one is saved as the pending
// ceremony, and nothing is published until the thresholds hold.
func writeInit(ctx context.Context, o InitOptions, set *pendingSet, t *transcript, now time.Time) error {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", o.Dir, err)
	}
	unlock, err := trust.Lock(ctx, o.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	if o.Force {
		if err := trust.Remove(o.Dir); err != nil {
			return err
		}
		if err := removePending(o.Dir); err != nil {
			return err
		}
	}
	if set.complete() {
		return set.publish(ctx, o.Dir, t, now)
	}
	// Holders who are not here yet sign later, one after another (Sign).
	if err := set.selfCheck(); err != nil {
		return err
	}
	return set.wait(o.Dir, t)
}

func sign[T metadata.Roles](m *metadata.Metadata[T], role string, keys []*hsm.Key, t *transcript, res *InitResult) error {
	for _, k := range keys {
		if !k.Private() {
			continue
		}
		if err := trust.Sign(m, role, k.Signer); err != nil {
			return err
		}
		id, err := trust.KeyID(k.Public)
		if err != nil {
			return err
		}
		rk := res.Roles[role]
		rk.SignedBy = append(rk.SignedBy, id)
		res.Roles[role] = rk
		if err := t.add(Entry{Step: "sign", Role: role, Version: 1, KeyIDs: []string{id}}); err != nil {
			return err
		}
	}
	return nil
}

// addBytes encodes every file of pub into mem and records its sha256.
func addBytes(mem trust.MemSource, res *InitResult, pub trust.Publication) error {
	put := func(name string, b []byte, err error) error {
		if err != nil {
			return fmt.Errorf("encoding %s: %w", name, err)
		}
		mem[name] = b
		s := sha256.Sum256(b)
		res.Files[filepath.Join(trust.MetadataDir, name)] = hex.EncodeToString(s[:])
		return nil
	}
	for _, r := range pub.Roots {
		b, err := r.ToBytes(true)
		if err := put(trust.FileName(trust.Root, r.Signed.Version), b, err); err != nil {
			return err
		}
	}
	b, err := pub.Targets.ToBytes(true)
	if err := put(trust.FileName(trust.Targets, pub.Targets.Signed.Version), b, err); err != nil {
		return err
	}
	if pub.Snapshot != nil {
		b, err := pub.Snapshot.ToBytes(true)
		if err := put(trust.FileName(trust.Snapshot, pub.Snapshot.Signed.Version), b, err); err != nil {
			return err
		}
	}
	if pub.Timestamp != nil {
		b, err := pub.Timestamp.ToBytes(true)
		if err := put(trust.FileName(trust.Timestamp, 0), b, err); err != nil {
			return err
		}
	}
	return nil
}

func nonNil(k *hsm.Key) []*hsm.Key {
	if k == nil {
		return nil
	}
	return []*hsm.Key{k}
}

func expiryStrings(e trust.Expiry) map[string]string {
	m := map[string]string{}
	for r, d := range e {
		m[r] = trust.FormatDuration(d)
	}
	return m
}
