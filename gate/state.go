package gate

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/sync/singleflight"

	"github.com/coldharbor/coldharbor/trust"
)

// cosignPubTarget is the target that publishes the cosign keys (import
// writes it; bundle.CosignPubTarget names the same file).
const cosignPubTarget = "cosign.pub"

// state is one verified version of the repository, never changed once
// built; closures fill in lazily under their own lock.
type state struct {
	timestamp   []byte // the timestamp.json it was verified from
	tsVersion   int64
	targetsVer  int64
	expires     time.Time                    // the earliest expiry of any role
	expiresRole string                       // e.g. "timestamp v7"
	repos       map[string]map[string]target // repository → tag → target
	keys        map[string]crypto.PublicKey  // cosign.pub, by TUF key ID

	mu       sync.Mutex
	closures map[string]*closure
	flight   singleflight.Group // closure look-ups, by repository
}

// target is one trusted image: the digest and size TUF signed for it.
type target struct {
	name      string
	digest    v1.Hash
	size      int64
	mediaType string
	// attached are the attachments the signed target lists
	// (custom.attachments): manifest digest → its size.
	attached map[v1.Hash]int64
}

// Reload verifies the repository as a TUF client does, and replaces the
// state when timestamp.json changed and the new version verifies. A
// version older than the one served is refused as a rollback.
func (g *Gate) Reload(ctx context.Context) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	ts, err := g.src.ReadMeta(trust.Timestamp, 0)
	if err != nil {
		return g.failed(fmt.Errorf("reading timestamp.json: %w", err))
	}
	old := g.state.Load()
	if old != nil && bytes.Equal(ts, old.timestamp) {
		return nil
	}
	if f := g.failure.Load(); f != nil && bytes.Equal(ts, f.timestamp) && old != nil {
		return nil // refused already, and said so; the last verified state stays
	}
	v, err := trust.VerifySource(ctx, pinned{g.src, trust.Timestamp, ts}, trust.VerifyOptions{Anchor: g.anchor(), Now: g.cfg.Now()})
	if err != nil {
		return g.failedAt(ts, err)
	}
	if old != nil && v.Timestamp.Signed.Version < old.tsVersion {
		return g.failedAt(ts, &trust.VerificationError{What: trust.Timestamp, Version: v.Timestamp.Signed.Version,
			Reason: fmt.Sprintf("older than the version v%d already served (rollback)", old.tsVersion)})
	}
	st, err := g.newState(ctx, ts, v)
	if err != nil {
		return g.failedAt(ts, err)
	}
	g.state.Store(st)
	g.failure.Store(nil)
	g.log.Info("serving repository", "timestamp", st.tsVersion, "targets", st.targetsVer, "expires", st.expires.UTC().Format(time.RFC3339))
	return nil
}

func (g *Gate) failed(err error) error { return g.failedAt(nil, err) }

// failedAt records a reload that did not verify timestamp.json's bytes ts,
// so that the same bytes are not verified (and reported) again while an
// older verified state is served.
func (g *Gate) failedAt(ts []byte, err error) error {
	g.failure.Store(&loadFailure{err: err, when: g.cfg.Now(), timestamp: ts})
	return err
}

// anchor is the root to verify from: the configured one, or the
// repository's pinned root (or its 1.root.json).
func (g *Gate) anchor() []byte {
	if len(g.cfg.Root) > 0 {
		return g.cfg.Root
	}
	return g.src.anchor()
}

func (g *Gate) newState(ctx context.Context, ts []byte, v *trust.Verified) (*state, error) {
	st := &state{timestamp: ts, tsVersion: v.Timestamp.Signed.Version, targetsVer: v.Targets.Signed.Version,
		repos: map[string]map[string]target{}, closures: map[string]*closure{}}
	st.expires, st.expiresRole = v.Root.Signed.Expires, fmt.Sprintf("root v%d", v.Root.Signed.Version)
	for _, e := range []struct {
		role    string
		version int64
		expires time.Time
	}{
		{trust.Targets, v.Targets.Signed.Version, v.Targets.Signed.Expires},
		{trust.Snapshot, v.Snapshot.Signed.Version, v.Snapshot.Signed.Expires},
		{trust.Timestamp, v.Timestamp.Signed.Version, v.Timestamp.Signed.Expires},
	} {
		if e.expires.Before(st.expires) {
			st.expires, st.expiresRole = e.expires, fmt.Sprintf("%s v%d", e.role, e.version)
		}
	}
	for n, t := range v.Targets.Signed.Targets {
		if n == cosignPubTarget {
			continue
		}
		repo, tag, ok := splitTarget(n)
		h, okHash := t.Hashes["sha256"]
		if !ok || !okHash {
			continue // not an image target
		}
		d, err := v1.NewHash("sha256:" + h.String())
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", n, err)
		}
		if st.repos[repo] == nil {
			st.repos[repo] = map[string]target{}
		}
		st.repos[repo][tag] = target{name: n, digest: d, size: t.Length, mediaType: mediaTypeOf(t), attached: attachedOf(t)}
	}
	if g.cfg.RequireSignature {
		keys, err := g.cosignKeys(ctx, v)
		if err != nil {
			return nil, err
		}
		st.keys = keys
	}
	return st, nil
}

// splitTarget splits REPOSITORY:TAG; names without a tag are not images.
func splitTarget(n string) (repo, tag string, ok bool) {
	i := strings.LastIndexByte(n, ':')
	if i <= 0 || strings.Contains(n[i:], "/") {
		return "", "", false
	}
	return n[:i], n[i+1:], true
}

func mediaTypeOf(t *metadata.TargetFiles) string {
	if t.Custom == nil {
		return ""
	}
	var c struct {
		MediaType string `json:"mediaType"`
	}
	_ = json.Unmarshal(*t.Custom, &c)
	return c.MediaType
}

// attachedOf returns the attachments a signed target lists in
// custom.attachments (the export's record, signed by the targets keys), by
// manifest digest. A malformed entry is left out: it admits nothing.
func attachedOf(t *metadata.TargetFiles) map[v1.Hash]int64 {
	if t.Custom == nil {
		return nil
	}
	var c struct {
		Attachments []struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		} `json:"attachments"`
	}
	if json.Unmarshal(*t.Custom, &c) != nil || len(c.Attachments) == 0 {
		return nil
	}
	out := map[v1.Hash]int64{}
	for _, a := range c.Attachments {
		if d, err := v1.NewHash(a.Digest); err == nil && a.Size > 0 {
			out[d] = a.Size
		}
	}
	return out
}

// cosignKeys reads the cosign.pub target, checked against its signed length
// and hashes, and parses every PEM key in it.
func (g *Gate) cosignKeys(ctx context.Context, v *trust.Verified) (map[string]crypto.PublicKey, error) {
	t, ok := v.Targets.Signed.Targets[cosignPubTarget]
	if !ok {
		return nil, &trust.VerificationError{What: trust.Targets, Version: v.Targets.Signed.Version, Reason: "no cosign.pub target, so --require-signature has no key to check with"}
	}
	data, err := g.src.ReadTarget(ctx, cosignPubTarget, t)
	if err != nil {
		return nil, err
	}
	keys := map[string]crypto.PublicKey{}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem.EncodeToMemory(block))
		if err != nil {
			return nil, fmt.Errorf("cosign.pub: %w", err)
		}
		id, err := trust.KeyID(pub)
		if err != nil {
			return nil, fmt.Errorf("cosign.pub: %w", err)
		}
		keys[id] = pub
	}
	if len(keys) == 0 {
		return nil, &trust.VerificationError{What: trust.Targets, Reason: "cosign.pub holds no key"}
	}
	return keys, nil
}
