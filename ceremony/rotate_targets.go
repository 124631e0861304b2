package ceremony

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// resignTargets re-signs the current targets under the next root when they
// no longer verify there (targets keys or threshold changed): version+1,
// the same targets, cosign.pub naming the new targets keys, signed by the
// new targets keys given. Without their threshold the rotation is refused:
// a root whose targets no client can verify must not be published.
func (r *rotation) resignTargets() error {
	cur := r.st.Targets
	if r.next.VerifyDelegate(trust.Targets, cur) == nil {
		return nil
	}
	exp := r.o.TargetsExpiry
	if exp == 0 {
		exp = trust.DefaultExpiry()[trust.Targets]
	}
	tg := trust.NextTargets(cur, r.now, exp)
	cosignPub, err := trust.CosignPub(r.next)
	if err != nil {
		return err
	}
	tg.Signed.Targets[trust.CosignPubTarget] = trust.FileTarget(trust.CosignPubTarget, cosignPub)
	ids, th := trust.RoleKeyIDs(r.next, trust.Targets)
	for _, k := range r.o.Keys {
		id, err := trust.KeyID(k.Public)
		if err != nil {
			return err
		}
		if !slices.Contains(ids, id) || !k.Private() {
			continue
		}
		if err := trust.Sign(tg, trust.Targets, k.Signer); err != nil {
			return err
		}
		r.res.TargetsSignedBy = append(r.res.TargetsSignedBy, id)
		if err := r.t.add(Entry{Step: "sign", Role: trust.Targets, Version: tg.Signed.Version, KeyIDs: []string{id}}); err != nil {
			return err
		}
	}
	if err := r.next.VerifyDelegate(trust.Targets, tg); err != nil {
		return &trust.VerificationError{What: trust.Targets, Version: tg.Signed.Version, KeyIDs: r.res.TargetsSignedBy,
			Reason: fmt.Sprintf("targets v%d do not verify under root v%d's targets keys, so they are re-signed in this sitting: that needs %d signature(s) by %s: bring those holders",
				cur.Signed.Version, r.next.Signed.Version, th, strings.Join(shortIDs(ids), ", ")), Err: err}
	}
	r.targets = tg
	r.res.TargetsVersion = tg.Signed.Version
	return nil
}

// publish writes the next root (and re-signed targets) into the
// repository, pins the root and closes the sitting's transcript.
func (r *rotation) publish(ctx context.Context) (*RotateResult, error) {
	pub := trust.Publication{Roots: []*metadata.Metadata[metadata.RootType]{r.next}, Targets: r.targets}
	if err := trust.Publish(ctx, r.o.Dir, pub); err != nil {
		return nil, err
	}
	files := map[string]string{r.metaName(trust.Root, r.next.Signed.Version): r.res.RootSHA256}
	if r.targets != nil {
		b, err := r.targets.ToBytes(true)
		if err != nil {
			return nil, err
		}
		r.res.TargetsSHA256 = sha256Hex(b)
		files[r.metaName(trust.Targets, r.targets.Signed.Version)] = r.res.TargetsSHA256
	}
	detail := map[string]any{"changed": r.res.Changed}
	if err := r.t.add(Entry{Step: "rotate.published", Version: r.next.Signed.Version, Files: files, Detail: detail}); err != nil {
		return nil, err
	}
	if err := r.t.end(filepath.Join(r.o.Dir, trust.TranscriptFile)); err != nil {
		return nil, err
	}
	r.res.TranscriptHead = r.t.head()
	return r.res, nil
}

func (r *rotation) metaName(role string, v int64) string {
	return filepath.ToSlash(filepath.Join(trust.MetadataDir, trust.FileName(role, v)))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func shortIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id
		if len(id) > 16 {
			out[i] = id[:16]
		}
	}
	return out
}

// recordAttestation verifies a hardware key's attestation and puts it into
// a transcript entry's detail; one that does not verify is refused unless
// allowed (then recorded as refused). Keys without attestation pass.
func recordAttestation(k *hsm.Key, role, id string, roots *x509.CertPool, allow bool, detail map[string]any) error {
	if k.Attest == nil {
		return nil
	}
	a, err := k.Attest(roots)
	if err != nil {
		if !allow {
			return &trust.VerificationError{What: role, KeyIDs: []string{id}, Reason: fmt.Sprintf("key %s: its attestation does not verify", k.URI), Err: err}
		}
		detail["attestation_refused"] = err.Error()
		return nil
	}
	detail["attestation"] = a
	return nil
}
