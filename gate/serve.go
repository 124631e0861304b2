package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// serveManifest answers a manifest by tag (through TUF) or by digest (only
// when the repository's closure holds it).
func (g *Gate) serveManifest(w http.ResponseWriter, r *http.Request, st *state, repo, ref string) {
	ctx := r.Context()
	c, err := g.closureFor(ctx, st, repo, closureTTL)
	if err != nil {
		g.upstreamFailed(w, r, repo, ref, err)
		return
	}
	if d, ok := parseDigest(ref); ok {
		g.serveManifestDigest(w, r, st, c, repo, d)
		return
	}
	if !tagName.MatchString(ref) {
		ociError(w, http.StatusNotFound, "MANIFEST_INVALID", "invalid tag or digest")
		return
	}
	if t, ok := st.repos[repo][ref]; ok {
		if why, refused := c.refused[t.digest]; refused {
			g.refuse(w, r, repo, ref, why)
			return
		}
		m, err := g.up.fetchManifest(ctx, repo, "", t.digest, t.size)
		if why := targetFailure(t, err); why != "" {
			g.refuse(w, r, repo, ref, why)
			return
		}
		if err != nil {
			g.upstreamFailed(w, r, repo, ref, err)
			return
		}
		writeManifest(w, r, m, t.mediaType)
		return
	}
	if g.serveAttachment(w, r, st, c, repo, ref) {
		return
	}
	g.refuse(w, r, repo, ref, fmt.Sprintf("targets v%d has no target %s:%s (tags are resolved through TUF, not the upstream registry)", st.targetsVer, repo, ref))
}

func (g *Gate) serveManifestDigest(w http.ResponseWriter, r *http.Request, st *state, c *closure, repo string, d v1.Hash) {
	if why, refused := c.refused[d]; refused {
		g.refuse(w, r, repo, d.String(), why)
		return
	}
	a, ok := c.manifests[d]
	if !ok && g.cfg.Now().Sub(c.built) > closureRetry {
		var err error
		if c, err = g.closureFor(r.Context(), st, repo, closureRetry); err != nil {
			g.upstreamFailed(w, r, repo, d.String(), err)
			return
		}
		a, ok = c.manifests[d]
	}
	if !ok {
		g.refuse(w, r, repo, d.String(), fmt.Sprintf("the digest is not a trusted target of targets v%d, nor a platform or cosign attachment of one", st.targetsVer))
		return
	}
	m, err := g.up.fetchManifest(r.Context(), repo, "", d, a.size)
	if err != nil {
		g.upstreamFailed(w, r, repo, d.String(), err)
		return
	}
	writeManifest(w, r, m, "")
}

// serveAttachment answers cosign's sha256-<hex>.<suffix> tags of a trusted
// digest, and its referrers fallback tag sha256-<hex>: the manifest upstream has under that tag, if its digest is in the
// closure (so its blobs are too). It reports whether ref was such a tag.
func (g *Gate) serveAttachment(w http.ResponseWriter, r *http.Request, st *state, c *closure, repo, ref string) bool {
	if !strings.HasPrefix(ref, "sha256-") {
		return false
	}
	hexPart, suffix, dotted := strings.Cut(strings.TrimPrefix(ref, "sha256-"), ".")
	subject, err := v1.NewHash("sha256:" + hexPart)
	if err != nil || (dotted && !isAttachmentSuffix(suffix)) {
		return false
	}
	if a, ok := c.manifests[subject]; !ok || a.attachment {
		return false
	}
	m, err := g.up.fetchManifest(r.Context(), repo, ref, v1.Hash{}, 0)
	if err != nil {
		if errors.Is(err, errNotFound) {
			ociError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", fmt.Sprintf("%s:%s: no such attachment upstream", repo, ref))
		} else {
			g.upstreamFailed(w, r, repo, ref, err)
		}
		return true
	}
	if _, ok := c.manifests[m.digest]; !ok {
		if c, err = g.closureFor(r.Context(), st, repo, closureRetry); err != nil {
			g.upstreamFailed(w, r, repo, ref, err)
			return true
		}
		if _, ok := c.manifests[m.digest]; !ok {
			g.refuse(w, r, repo, ref, "the manifest upstream has under this tag is neither an attachment the signed target lists nor a cosign signature (or it changed while it was read)")
			return true
		}
	}
	writeManifest(w, r, m, "")
	return true
}

func isAttachmentSuffix(s string) bool {
	for _, a := range attachmentSuffixes {
		if s == a {
			return true
		}
	}
	return false
}

// serveBlob streams a blob that a manifest of the closure references, at
// most its descriptor's size, hashed on the way: the last byte is held back
// until the digest matches, so a client never receives a whole wrong blob.
// A blob only an unlisted signature manifest references is checked whole
// (small JSON) before a byte is sent.
func (g *Gate) serveBlob(w http.ResponseWriter, r *http.Request, st *state, repo, ref string) {
	d, ok := parseDigest(ref)
	if !ok {
		ociError(w, http.StatusNotFound, "DIGEST_INVALID", "invalid digest")
		return
	}
	size, small, err := g.allowedBlob(r.Context(), st, repo, d)
	if err != nil {
		g.upstreamFailed(w, r, repo, ref, err)
		return
	}
	if size < 0 {
		g.refuse(w, r, repo, ref, fmt.Sprintf("no manifest that targets v%d trusts references this blob", st.targetsVer))
		return
	}
	method := r.Method
	if small {
		method = http.MethodGet // checked whole even for HEAD
	}
	resp, err := g.up.get(r.Context(), method, repo, "blobs", ref, nil)
	if errors.Is(err, errNotFound) {
		ociError(w, http.StatusNotFound, "BLOB_UNKNOWN", fmt.Sprintf("blob %s of %s is not in the upstream registry", ref, repo))
		return
	}
	if err != nil {
		g.upstreamFailed(w, r, repo, ref, err)
		return
	}
	defer resp.Body.Close()
	if resp.ContentLength >= 0 && resp.ContentLength != size {
		g.refuse(w, r, repo, ref, fmt.Sprintf("the upstream registry answered %d bytes for a blob of %d: refused", resp.ContentLength, size))
		return
	}
	if small {
		g.serveSmallJSON(w, r, resp.Body, repo, d, size)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Docker-Content-Digest", ref)
	if r.Method == http.MethodHead {
		return
	}
	if err := streamVerified(w, resp.Body, d, size); err != nil {
		g.log.Warn("blob stream cut", "name", repo, "digest", ref, "err", err)
		panic(http.ErrAbortHandler) // the client must see a broken transfer, not a complete one
	}
}

// serveSmallJSON answers a signature manifest's blob (at most
// maxPayloadSize) only after all of it hashed to d and parsed as JSON: a
// payload or a config, never a layer archive.
func (g *Gate) serveSmallJSON(w http.ResponseWriter, r *http.Request, body io.Reader, repo string, d v1.Hash, size int64) {
	data, err := io.ReadAll(io.LimitReader(body, size+1))
	if err != nil {
		g.upstreamFailed(w, r, repo, d.String(), err)
		return
	}
	if got := hashOf(data); int64(len(data)) != size || got != d {
		g.refuse(w, r, repo, d.String(), (&digestError{want: d.String(), got: got.String()}).Error()+": refused")
		return
	}
	if !json.Valid(data) {
		g.refuse(w, r, repo, d.String(), "the blob is referenced only by a cosign signature manifest and is not the JSON one holds: refused")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Docker-Content-Digest", d.String())
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(data)
}

// hashOf is the sha256 digest of b.
func hashOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// allowedBlob returns the blob's size when the closure references it, -1
// when not (after one rebuild of a closure older than closureRetry), and
// whether only a signature manifest upstream chose references it.
func (g *Gate) allowedBlob(ctx context.Context, st *state, repo string, d v1.Hash) (int64, bool, error) {
	c, err := g.closureFor(ctx, st, repo, closureTTL)
	if err != nil {
		return 0, false, err
	}
	if size, small, ok := c.blob(d); ok {
		return size, small, nil
	}
	if g.cfg.Now().Sub(c.built) <= closureRetry {
		return -1, false, nil
	}
	if c, err = g.closureFor(ctx, st, repo, closureRetry); err != nil {
		return 0, false, err
	}
	if size, small, ok := c.blob(d); ok {
		return size, small, nil
	}
	return -1, false, nil
}

// copyBufSize is large enough that loopback pulls are not bound by syscalls.
const copyBufSize = 256 << 10

func streamVerified(w io.Writer, body io.Reader, want v1.Hash, size int64) error {
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(body, size), h)
	if size > 0 {
		buf := make([]byte, copyBufSize)
		if n, err := io.CopyBuffer(w, io.LimitReader(src, size-1), buf); err != nil || n != size-1 {
			return fmt.Errorf("after %d of %d bytes: %v", n, size, err)
		}
	}
	var last [1]byte
	if size > 0 {
		if _, err := io.ReadFull(src, last[:]); err != nil {
			return fmt.Errorf("the last byte: %w", err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return &digestError{want: want.String(), got: "sha256:" + got}
	}
	if size > 0 {
		if _, err := w.Write(last[:]); err != nil {
			return err
		}
	}
	return nil
}
