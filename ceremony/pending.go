package ceremony

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/atomicfile"
	"github.com/coldharbor/coldharbor/internal/safefile"
	"github.com/coldharbor/coldharbor/trust"
)

// A ceremony whose root or targets threshold is not met yet waits in
// DIR/.coldharbor/pending/ (private state, never published) while the
// missing holders sign one after another — as they must when there are
// fewer card readers than key holders.
const pendingDir = "pending"

// Missing is what a pending role still needs.
type Missing struct {
	Needed int      `json:"needed"` // more signatures
	From   []string `json:"from"`   // key IDs that may give them
	Signed []string `json:"signed"` // key IDs that have signed
}

type pendingSet struct {
	Root      *metadata.Metadata[metadata.RootType]
	Targets   *metadata.Metadata[metadata.TargetsType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	Result    *InitResult
}

func pendingPath(dir string) string { return filepath.Join(dir, trust.StateDir, pendingDir) }

func hasPending(dir string) bool {
	_, err := os.Stat(filepath.Join(pendingPath(dir), "root.json"))
	return err == nil
}

func removePending(dir string) error {
	if err := os.RemoveAll(pendingPath(dir)); err != nil {
		return fmt.Errorf("removing the pending ceremony: %w", err)
	}
	return nil
}

// complete reports whether root and targets meet their thresholds, as
// go-tuf counts them.
func (p *pendingSet) complete() bool {
	return p.Root.VerifyDelegate(trust.Root, p.Root) == nil && p.Root.VerifyDelegate(trust.Targets, p.Targets) == nil
}

func (p *pendingSet) missing() map[string]Missing {
	out := map[string]Missing{}
	for _, r := range []struct {
		role string
		sigs []metadata.Signature
	}{{trust.Root, p.Root.Signatures}, {trust.Targets, p.Targets.Signatures}} {
		ids, threshold := trust.RoleKeyIDs(p.Root, r.role)
		signed := map[string]bool{}
		for _, s := range r.sigs {
			signed[s.KeyID] = true
		}
		m := Missing{Signed: []string{}, From: []string{}}
		for _, id := range ids {
			if signed[id] {
				m.Signed = append(m.Signed, id)
			} else {
				m.From = append(m.From, id)
			}
		}
		if n := threshold - len(m.Signed); n > 0 {
			m.Needed = n
			out[r.role] = m
		}
	}
	return out
}

// selfCheck verifies every signature made so far.
func (p *pendingSet) selfCheck() error {
	for _, check := range []func() error{
		func() error { return partialCheck(p.Root, trust.Root, p.Root) },
		func() error { return partialCheck(p.Root, trust.Targets, p.Targets) },
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// partialCheck verifies that each signature present is valid, so a bad
// signature is found now, not when the last holder signs.
func partialCheck[T metadata.Roles](root *metadata.Metadata[metadata.RootType], role string, m *metadata.Metadata[T]) error {
	if _, err := trust.CheckSignatures(root, role, m); err != nil {
		return fmt.Errorf("self-check of %s: %w", role, err)
	}
	return nil
}

func (p *pendingSet) save(dir string) error {
	pd := pendingPath(dir)
	if err := os.MkdirAll(pd, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", pd, err)
	}
	files := map[string]interface{ ToBytes(bool) ([]byte, error) }{"root.json": p.Root, "targets.json": p.Targets}
	if p.Snapshot != nil {
		files["snapshot.json"] = p.Snapshot
	}
	if p.Timestamp != nil {
		files["timestamp.json"] = p.Timestamp
	}
	for name, m := range files {
		b, err := m.ToBytes(true)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(pd, name), b, 0o600); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(p.Result, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(pd, "result.json"), b, 0o600)
}

func loadPending(dir string) (*pendingSet, error) {
	pd := pendingPath(dir)
	// The private folder may have been tampered with: bounded reads of
	// regular files only (a FIFO planted there must not hang the ceremony).
	read := func(name string) ([]byte, error) {
		return safefile.ReadFile(filepath.Join(pd, name), trust.MaxTargetsSize)
	}
	b, err := read("root.json")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no ceremony is pending in %s", dir)
	}
	if err != nil {
		return nil, err
	}
	p := &pendingSet{Result: &InitResult{}}
	if p.Root, err = metadata.Root().FromBytes(b); err != nil {
		return nil, fmt.Errorf("pending root: %w", err)
	}
	if b, err = read("targets.json"); err != nil {
		return nil, err
	}
	if p.Targets, err = metadata.Targets().FromBytes(b); err != nil {
		return nil, fmt.Errorf("pending targets: %w", err)
	}
	if b, err = read("snapshot.json"); err == nil {
		if p.Snapshot, err = metadata.Snapshot().FromBytes(b); err != nil {
			return nil, fmt.Errorf("pending snapshot: %w", err)
		}
	}
	if b, err = read("timestamp.json"); err == nil {
		if p.Timestamp, err = metadata.Timestamp().FromBytes(b); err != nil {
			return nil, fmt.Errorf("pending timestamp: %w", err)
		}
	}
	if b, err = read("result.json"); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, p.Result); err != nil {
		return nil, fmt.Errorf("pending result: %w", err)
	}
	return p, p.selfCheck()
}

// publish verifies the completed ceremony exactly as it will be published,
// as a client would, then writes it, pins root v1 and closes the
// transcript.
func (p *pendingSet) publish(ctx context.Context, dir string, t *transcript, now time.Time) error {
	res := p.Result
	pub := trust.Publication{Roots: []*metadata.Metadata[metadata.RootType]{p.Root}, Targets: p.Targets, Snapshot: p.Snapshot, Timestamp: p.Timestamp}
	mem := trust.MemSource{}
	res.Files = map[string]string{}
	if err := addBytes(mem, res, pub); err != nil {
		return err
	}
	rootBytes := mem[trust.FileName(trust.Root, 1)]
	if pub.Timestamp != nil {
		if _, err := trust.VerifySource(ctx, mem, trust.VerifyOptions{Anchor: rootBytes, Now: now}); err != nil {
			return fmt.Errorf("self-check of the new repository failed: %w", err)
		}
	} else {
		root, _, err := trust.UpdateRoots(rootBytes)
		if err != nil {
			return fmt.Errorf("self-check of root v1 failed: %w", err)
		}
		if err := root.VerifyDelegate(trust.Targets, p.Targets); err != nil {
			return fmt.Errorf("self-check of targets v1 failed: %w", err)
		}
	}
	sum := sha256.Sum256(rootBytes)
	res.RootSHA256 = hex.EncodeToString(sum[:])
	res.Missing = nil
	// Keep the complete set, and the record so far, until the end: a crash
	// between here and removePending is finished by 'ceremony sign' with no
	// key, which publishes these same bytes again (signatures are random, so
	// they could not be made again).
	if err := p.save(dir); err != nil {
		return err
	}
	if err := t.end(filepath.Join(dir, trust.TranscriptFile)); err != nil {
		return err
	}
	if err := trust.Publish(ctx, dir, pub); err != nil {
		return err
	}
	if err := t.add(Entry{Step: "init.published", Version: 1, Files: res.Files, Detail: map[string]any{"pending": res.Pending, "root_sha256": res.RootSHA256}}); err != nil {
		return err
	}
	if err := t.end(filepath.Join(dir, trust.TranscriptFile)); err != nil {
		return err
	}
	res.TranscriptHead = t.head()
	return removePending(dir)
}

// SignOptions configure Sign.
type SignOptions struct {
	Dir              string
	Keys             []*hsm.Key
	Now              time.Time
	AttestationRoots *x509.CertPool
	AllowUnattested  bool
}

// Sign adds the signatures of the keys given to a pending ceremony's root
// and targets (each key signs the roles it holds), and publishes the
// repository once both thresholds hold. With no key, it finishes a ceremony
// whose publication was interrupted after the last signature.
func Sign(ctx context.Context, o SignOptions) (*InitResult, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	unlock, err := trust.Lock(ctx, o.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	p, err := loadPending(o.Dir)
	if err != nil {
		return nil, err
	}
	t, err := openTranscript(filepath.Join(o.Dir, trust.TranscriptFile), func() time.Time { return now })
	if err != nil {
		return nil, err
	}
	t.sealWith(o.Keys...)
	for _, k := range o.Keys {
		if err := p.signWith(k, o, t); err != nil {
			return nil, err
		}
	}
	if len(o.Keys) == 0 && !p.complete() {
		return nil, fmt.Errorf("no key given, and %w: it still needs signatures", ErrPending)
	}
	if err := p.selfCheck(); err != nil {
		return nil, err
	}
	if !p.complete() {
		return p.Result, p.wait(o.Dir, t)
	}
	if err := p.publish(ctx, o.Dir, t, now); err != nil {
		return nil, err
	}
	return p.Result, nil
}

// signWith signs every role of the pending root that k holds (root,
// targets or both) and has not signed yet; a key with nothing to sign is
// refused.
func (p *pendingSet) signWith(k *hsm.Key, o SignOptions, t *transcript) error {
	id, err := trust.KeyID(k.Public)
	if err != nil {
		return err
	}
	if !k.Private() {
		return fmt.Errorf("%s: only a public key is here: the holder's key must sign", k.URI)
	}
	detail := map[string]any{"source": k.URI.String()}
	if err := recordAttestation(k, trust.Root, id, o.AttestationRoots, o.AllowUnattested, detail); err != nil {
		return err
	}
	signedAny := false
	for _, r := range []struct {
		role string
		sign func() error
	}{
		{trust.Root, func() error { return trust.Sign(p.Root, trust.Root, k.Signer) }},
		{trust.Targets, func() error { return trust.Sign(p.Targets, trust.Targets, k.Signer) }},
	} {
		ids, _ := trust.RoleKeyIDs(p.Root, r.role)
		if !contains(ids, id) || alreadySigned(p, r.role, id) {
			continue
		}
		if err := r.sign(); err != nil {
			return err
		}
		signedAny = true
		rk := p.Result.Roles[r.role]
		rk.SignedBy = append(rk.SignedBy, id)
		p.Result.Roles[r.role] = rk
		if err := t.add(Entry{Step: "sign", Role: r.role, Version: 1, KeyIDs: []string{id}, Detail: detail}); err != nil {
			return err
		}
	}
	if !signedAny {
		return fmt.Errorf("key %s (%s) has nothing to sign: it is not a root or targets key of the pending root, or it has signed already", id, k.URI)
	}
	return nil
}

// wait saves an incomplete ceremony in dir's private state for the holders
// to come, and records who is missing in the transcript and the result.
func (p *pendingSet) wait(dir string, t *transcript) error {
	missing := p.missing()
	if err := t.add(Entry{Step: "init.pending", Detail: map[string]any{"missing": missing}}); err != nil {
		return err
	}
	if err := p.save(dir); err != nil {
		return err
	}
	if err := t.end(filepath.Join(dir, trust.TranscriptFile)); err != nil {
		return err
	}
	p.Result.Missing = missing
	p.Result.TranscriptHead = t.head()
	return nil
}

// Status reports a pending ceremony: who has signed, who is missing.
func Status(dir string) (*InitResult, error) {
	p, err := loadPending(dir)
	if err != nil {
		return nil, err
	}
	p.Result.Missing = p.missing()
	return p.Result, nil
}

func alreadySigned(p *pendingSet, role, id string) bool {
	sigs := p.Root.Signatures
	if role == trust.Targets {
		sigs = p.Targets.Signatures
	}
	for _, s := range sigs {
		if s.KeyID == id {
			return true
		}
	}
	return false
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// openTranscript continues an existing transcript: it checks the hash chain
// of every line and carries on from the last.
func openTranscript(path string, now func() time.Time) (*transcript, error) {
	t := &transcript{now: now}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("transcript line %d: %w", t.seq+1, err)
		}
		if e.Seq != t.seq+1 || e.Prev != t.prev {
			return nil, fmt.Errorf("transcript line %d breaks the hash chain: the record was edited", t.seq+1)
		}
		sum := sha256.Sum256(sc.Bytes())
		t.prev, t.seq = hex.EncodeToString(sum[:]), e.Seq
	}
	return t, sc.Err()
}
