package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// referrerList is what upstream lists as the OCI 1.1 referrers of a digest.
type referrerList struct {
	index *parsed
	// tagged is the fallback tag's manifest, or nil when the list came from
	// the referrers API: that index is generated per request, not content-
	// addressed, so its digest must never become a servable manifest.
	tagged *manifest
}

// referrers lists the OCI 1.1 referrers of d upstream: through the
// referrers API (Harbor 2.15 and later, ggcr's registry: they keep no
// fallback tag), and where upstream does not answer it with an index
// (distribution answers 404), through the fallback tag sha256-<hex>.
func (u *upstream) referrers(ctx context.Context, repo string, d v1.Hash) (*referrerList, error) {
	p, err := u.referrersAPI(ctx, repo, d)
	if err == nil {
		return &referrerList{index: p}, nil
	}
	if ctx.Err() != nil {
		return nil, err
	}
	m, err := u.fetchManifest(ctx, repo, attachmentTag(d, ""), v1.Hash{}, 0)
	if err != nil {
		return nil, err
	}
	if p, err = parseManifest(m.raw); err != nil || len(p.Layers) > 0 || p.Config != nil {
		return nil, fmt.Errorf("the referrers tag %s of %s upstream is not an index", attachmentTag(d, ""), repo)
	}
	return &referrerList{index: p, tagged: m}, nil
}

// referrersAPI reads GET /v2/<repo>/referrers/<d> upstream, at most
// maxManifestSize bytes, as an image index.
func (u *upstream) referrersAPI(ctx context.Context, repo string, d v1.Hash) (*parsed, error) {
	ctx, cancel := context.WithTimeout(ctx, manifestTimeout)
	defer cancel()
	resp, err := u.get(ctx, http.MethodGet, repo, "referrers", d.String(), []string{string(types.OCIImageIndex)})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	what := fmt.Sprintf("the referrers of %s in %s", d, repo)
	if resp.ContentLength > maxManifestSize {
		return nil, &sizeError{what: what, limit: maxManifestSize}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s upstream: %w", what, err)
	}
	if len(raw) > maxManifestSize {
		return nil, &sizeError{what: what, limit: maxManifestSize}
	}
	p, err := parseManifest(raw)
	if err != nil || len(p.Layers) > 0 || p.Config != nil {
		return nil, fmt.Errorf("%s upstream: not an image index", what)
	}
	return p, nil
}

// referrerDescriptor is how the gate's referrers index lists an admitted
// referrer of subject: from the referrer manifest itself (read by digest,
// hashed), not from upstream's index. ok is false when the manifest does
// not name subject as its subject.
func referrerDescriptor(subject v1.Hash, r descriptor, m *manifest) (v1.Descriptor, bool) {
	var f struct {
		MediaType    types.MediaType `json:"mediaType"`
		ArtifactType string          `json:"artifactType"`
		Config       *struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
		Subject *struct {
			Digest v1.Hash `json:"digest"`
		} `json:"subject"`
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(m.raw, &f) != nil || f.Subject == nil || f.Subject.Digest != subject {
		return v1.Descriptor{}, false
	}
	desc := v1.Descriptor{MediaType: f.MediaType, Digest: r.Digest, Size: int64(len(m.raw)), ArtifactType: f.ArtifactType, Annotations: f.Annotations}
	if desc.MediaType == "" {
		desc.MediaType = types.MediaType(m.mediaType)
	}
	if desc.ArtifactType == "" && f.Config != nil {
		desc.ArtifactType = f.Config.MediaType
	}
	return desc, true
}

// setReferrers records the referrers of a trusted digest the closure
// admits, for the referrers API the gate serves.
func (b *builder) setReferrers(subject v1.Hash, list []v1.Descriptor) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.c.referrers[subject] = list
}

// serveReferrers answers the referrers API for a trusted digest (a target
// or a platform of one): an index of only the referrers the closure
// admits, filtered by ?artifactType= when asked.
func (g *Gate) serveReferrers(w http.ResponseWriter, r *http.Request, st *state, repo, ref string) {
	d, ok := parseDigest(ref)
	if !ok {
		ociError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest")
		return
	}
	c, err := g.closureFor(r.Context(), st, repo, closureTTL)
	if err != nil {
		g.upstreamFailed(w, r, repo, ref, err)
		return
	}
	if why, refused := c.refused[d]; refused {
		g.refuse(w, r, repo, ref, why)
		return
	}
	list, ok := c.referrers[d]
	if !ok && g.cfg.Now().Sub(c.built) > closureRetry {
		if c, err = g.closureFor(r.Context(), st, repo, closureRetry); err != nil {
			g.upstreamFailed(w, r, repo, ref, err)
			return
		}
		list, ok = c.referrers[d]
	}
	if !ok {
		g.refuse(w, r, repo, ref, fmt.Sprintf("the digest is not a trusted target of targets v%d, nor a platform of one", st.targetsVer))
		return
	}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
	want := r.URL.Query()["artifactType"]
	for _, desc := range list {
		if len(want) == 0 || slices.Contains(want, desc.ArtifactType) {
			idx.Manifests = append(idx.Manifests, desc)
		}
	}
	if len(want) > 0 {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	raw, err := json.Marshal(idx)
	if err != nil {
		ociError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", string(types.OCIImageIndex))
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(raw)
	}
}
