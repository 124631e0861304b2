package ceremony

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// Each sitting (init, a holder's ceremony sign, a rotation) ends with a
// seal: a transcript line whose detail holds, for every key used in the
// sitting, its signature over the running hash (the sha256 of the line
// before, as that line's successor records it in Prev). The hash chain
// alone shows that lines were not edited afterwards only to someone who
// holds the last hash; a seal shows it to anyone who trusts the root,
// because only the holders' keys can make it. A seal with no signature
// may close only a sitting that publishes what an earlier, signed sitting
// made (finishing an interrupted publication).
const stepSeal = "sitting.end"

// SealSignature is one key's signature in a seal.
type SealSignature struct {
	KeyID     string `json:"keyid"`
	Signature string `json:"signature"` // base64, over the bytes of Prev
}

// sealWith names the keys used in this sitting; end seals with them.
func (t *transcript) sealWith(keys ...*hsm.Key) { t.keys = append(t.keys, keys...) }

// end seals the sitting so far and appends it to the transcript at path.
func (t *transcript) end(path string) error {
	if err := t.seal(); err != nil {
		return err
	}
	return t.write(path)
}

func (t *transcript) seal() error {
	msg := []byte(t.prev)
	sigs := []SealSignature{}
	var ids []string
	for _, k := range t.keys {
		if k == nil || !k.Private() {
			continue
		}
		id, err := trust.KeyID(k.Public)
		if err != nil {
			return err
		}
		if slices.Contains(ids, id) {
			continue
		}
		sig, err := k.Signer.SignMessage(bytes.NewReader(msg))
		if err != nil {
			return fmt.Errorf("signing the transcript with %s: %w", k.URI, err)
		}
		if err := hsm.VerifySignature(k.Public, msg, sig); err != nil {
			return fmt.Errorf("self-check of the transcript signature by %s: %w", k.URI, err)
		}
		ids = append(ids, id)
		sigs = append(sigs, SealSignature{KeyID: id, Signature: base64.StdEncoding.EncodeToString(sig)})
	}
	return t.add(Entry{Step: stepSeal, KeyIDs: ids, Detail: map[string]any{"signatures": sigs}})
}

// Sitting is one sitting of the paper record.
type Sitting struct {
	Date  time.Time `json:"date"`
	Kind  string    `json:"kind"` // init, sign, rotate, publication
	Lines [2]int    `json:"lines"`
	// Holders are the key IDs whose signatures seal the sitting.
	Holders  []string          `json:"holders"`
	Hardware []HardwareKey     `json:"hardware,omitempty"`
	Files    map[string]string `json:"published,omitempty"` // file → sha256
	Hash     string            `json:"hash"`                // the running hash after the seal
}

// HardwareKey is what the transcript records of a hardware key's
// attestation in a sitting.
type HardwareKey struct {
	KeyID    string `json:"keyid"`
	Role     string `json:"role,omitempty"`
	Serial   uint32 `json:"serial,omitempty"`
	Firmware string `json:"firmware,omitempty"`
	Attested bool   `json:"attested"`
	Refused  string `json:"refused,omitempty"`
}

// checkSittings verifies every seal against the keys of the root in force
// at that point (and, for a rotation, of the root it published), and
// requires the last line to be a seal. It returns the sittings.
func checkSittings(entries []Entry, roots map[int64]*metadata.Metadata[metadata.RootType], head string) ([]Sitting, error) {
	var out []Sitting
	cur, rotated, start := int64(1), int64(0), 0
	for i := range entries {
		e := &entries[i]
		if e.Step == "rotate.published" {
			rotated = e.Version
		}
		if e.Step != stepSeal {
			continue
		}
		allowed := []*metadata.Metadata[metadata.RootType]{roots[cur], roots[rotated]}
		s, err := checkSeal(e, entries[start:i], allowed)
		if err != nil {
			return nil, err
		}
		s.Hash = head
		if i+1 < len(entries) {
			s.Hash = entries[i+1].Prev
		}
		out = append(out, *s)
		if rotated > 0 {
			cur, rotated = rotated, 0
		}
		start = i + 1
	}
	if start != len(entries) {
		return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: fmt.Sprintf("lines %d to %d are not sealed by any holder's signature: the record was cut or extended", start+1, len(entries))}
	}
	return out, nil
}

// checkSeal verifies one seal over the sitting's lines.
func checkSeal(e *Entry, lines []Entry, allowed []*metadata.Metadata[metadata.RootType]) (*Sitting, error) {
	s := describeSitting(lines)
	s.Lines = [2]int{e.Seq - len(lines), e.Seq}
	sigs, err := sealSignatures(e)
	if err != nil {
		return nil, err
	}
	offline := false
	for _, sig := range sigs {
		held, err := verifySealSig(e, sig, allowed)
		if err != nil {
			return nil, err
		}
		offline = offline || held
		s.Holders = append(s.Holders, sig.KeyID)
	}
	// The online keys live on networked machines: a sitting they alone
	// seal could be any record their holder chose to write.
	if len(sigs) > 0 && !offline {
		return nil, &trust.VerificationError{What: trust.WhatTranscript, KeyIDs: e.KeyIDs, Reason: fmt.Sprintf("line %d: the sitting is sealed by online (snapshot, timestamp) keys only, not by a root or targets key", e.Seq)}
	}
	if len(sigs) == 0 {
		for _, l := range lines {
			if l.Step != "init.published" && l.Step != "rotate.published" {
				return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: fmt.Sprintf("line %d closes a sitting with no holder's signature, and that sitting has a %s step", e.Seq, l.Step)}
			}
		}
	}
	return s, nil
}

func sealSignatures(e *Entry) ([]SealSignature, error) {
	var sigs []SealSignature
	if err := remarshal(e.Detail["signatures"], &sigs); err != nil {
		return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: fmt.Sprintf("line %d: the seal's signatures do not parse", e.Seq), Err: err}
	}
	return sigs, nil
}

// verifySealSig checks one seal signature over the seal's Prev with the
// key of that ID in one of the allowed roots, and reports whether that key
// is an offline one there (a root or targets key).
func verifySealSig(e *Entry, sig SealSignature, allowed []*metadata.Metadata[metadata.RootType]) (bool, error) {
	refuse := func(reason string, err error) error {
		return &trust.VerificationError{What: trust.WhatTranscript, KeyIDs: []string{sig.KeyID}, Reason: fmt.Sprintf("line %d: %s", e.Seq, reason), Err: err}
	}
	var key *metadata.Key
	offline := false
	for _, r := range allowed {
		if r != nil && r.Signed.Keys[sig.KeyID] != nil {
			key = r.Signed.Keys[sig.KeyID]
			rootIDs, _ := trust.RoleKeyIDs(r, trust.Root)
			targetsIDs, _ := trust.RoleKeyIDs(r, trust.Targets)
			offline = offline || slices.Contains(rootIDs, sig.KeyID) || slices.Contains(targetsIDs, sig.KeyID)
		}
	}
	if key == nil {
		return false, refuse("the sitting is sealed by a key the root at that point does not name", nil)
	}
	pub, err := key.ToPublicKey()
	if err != nil {
		return false, refuse("the sealing key cannot be read", err)
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Signature)
	if err != nil {
		return false, refuse("the seal's signature is not base64", err)
	}
	if err := hsm.VerifySignature(pub, []byte(e.Prev), raw); err != nil {
		return false, refuse("the seal's signature does not verify over the record before it (edited, or re-signed)", err)
	}
	return offline, nil
}

// describeSitting gathers the paper record's facts from a sitting's lines.
func describeSitting(lines []Entry) *Sitting {
	s := &Sitting{Kind: "publication", Holders: []string{}, Files: map[string]string{}}
	if len(lines) > 0 {
		s.Date = lines[0].Time
		switch lines[0].Step {
		case "init.start":
			s.Kind = "init"
		case "rotate.start":
			s.Kind = "rotate"
		case "sign":
			s.Kind = "sign"
		}
	}
	for _, l := range lines {
		for n, h := range l.Files {
			s.Files[n] = h
		}
		if hk, ok := hardwareOf(l); ok {
			s.Hardware = append(s.Hardware, hk)
		}
	}
	return s
}

func hardwareOf(l Entry) (HardwareKey, bool) {
	hk := HardwareKey{Role: l.Role}
	if len(l.KeyIDs) == 1 {
		hk.KeyID = l.KeyIDs[0]
	}
	if why, ok := l.Detail["attestation_refused"].(string); ok {
		hk.Refused = why
		return hk, true
	}
	var a hsm.Attestation
	if l.Detail["attestation"] == nil || remarshal(l.Detail["attestation"], &a) != nil {
		return hk, false
	}
	hk.Serial, hk.Firmware, hk.Attested = a.Serial, a.Firmware, true
	return hk, true
}

func remarshal(v any, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// rootsOf verifies the root chain from v1 (whose sha256 the paper record
// holds) to st's newest root, as a client walks it, and returns every
// version parsed: the keys each root named when the sittings were sealed.
func rootsOf(st *trust.State) (map[int64]*metadata.Metadata[metadata.RootType], error) {
	var files []trust.RootFile
	for v := int64(2); v <= st.Root.Signed.Version; v++ {
		b, ok := st.RootRaw[v]
		if !ok {
			return nil, &trust.VerificationError{What: trust.Root, Version: v, Reason: "missing from metadata/: the chain from root v1 cannot be walked"}
		}
		files = append(files, trust.RootFile{Version: v, Bytes: b})
	}
	first, added, err := trust.UpdateRoots(st.RootRaw[1], files...)
	if err != nil {
		return nil, err
	}
	if len(added) > 0 {
		first, err = metadata.Root().FromBytes(st.RootRaw[1])
		if err != nil {
			return nil, err
		}
	}
	out := map[int64]*metadata.Metadata[metadata.RootType]{1: first}
	for _, r := range added {
		out[r.Signed.Version] = r
	}
	return out, nil
}
