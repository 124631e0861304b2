package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// repoName is the distribution spec's repository name grammar.
var repoName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// tagName is the distribution spec's tag grammar.
var tagName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func (g *Gate) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", g.serveReady)
	mux.HandleFunc("/metadata/", g.serveStatic)
	mux.HandleFunc("/targets/", g.serveStatic)
	mux.HandleFunc("/v2/", g.serveV2)
	return mux
}

func (g *Gate) serveReady(w http.ResponseWriter, _ *http.Request) {
	st, err := g.current()
	if err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ready: timestamp v%d, targets v%d, expires %s\n", st.tsVersion, st.targetsVer, st.expires.UTC().Format("2006-01-02T15:04:05Z"))
}

// ociError writes the distribution spec's error body.
func ociError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// refuse answers 412 DENIED saying why, and logs the refusal.
func (g *Gate) refuse(w http.ResponseWriter, r *http.Request, repo, ref, reason string) {
	what := repo
	if ref != "" {
		what = repo + refSep(ref) + ref
	}
	g.log.Info("refused", "name", repo, "reference", ref, "reason", reason, "client", r.RemoteAddr)
	ociError(w, http.StatusPreconditionFailed, "DENIED", what+" is not signed in the coldharbor repository: "+reason)
}

func refSep(ref string) string {
	if strings.Contains(ref, ":") {
		return "@"
	}
	return ":"
}

// serveV2 is the read-only distribution API.
func (g *Gate) serveV2(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		ociError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the coldharbor gate is read-only: push to the upstream registry with coldharbor import")
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/v2/")
	if rest == "" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "{}")
		return
	}
	repo, kind, ref := splitPath(rest)
	if rest != "_catalog" && !repoName.MatchString(repo) {
		ociError(w, http.StatusNotFound, "NAME_INVALID", "invalid repository name")
		return
	}
	st, err := g.current()
	if err != nil {
		g.refuse(w, r, repo, ref, err.Error())
		return
	}
	if rest == "_catalog" {
		g.serveCatalog(w, st)
		return
	}
	repo = g.targetRepo(st, repo)
	if _, ok := st.repos[repo]; !ok {
		g.refuse(w, r, repo, ref, fmt.Sprintf("targets v%d has no image in repository %s", st.targetsVer, repo))
		return
	}
	switch kind {
	case "manifests":
		g.serveManifest(w, r, st, repo, ref)
	case "blobs":
		g.serveBlob(w, r, st, repo, ref)
	case "tags":
		g.serveTags(w, st, repo)
	case "referrers":
		g.serveReferrers(w, r, st, repo, ref)
	default:
		ociError(w, http.StatusNotFound, "UNSUPPORTED", "not served by the coldharbor gate")
	}
}

// targetRepo maps a name clients ask for to a target repository: the name
// itself, or with the upstream's prefix taken off, so that a containerd or
// CRI-O mirror that keeps the path of registry.internal/PREFIX/app reaches
// target app.
func (g *Gate) targetRepo(st *state, repo string) string {
	if _, ok := st.repos[repo]; ok || g.up.prefix == "" {
		return repo
	}
	if rest, ok := strings.CutPrefix(repo, g.up.prefix+"/"); ok {
		return rest
	}
	return repo
}

// splitPath splits NAME/manifests/REF, NAME/blobs/DIGEST and NAME/tags/list.
func splitPath(rest string) (repo, kind, ref string) {
	if n, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return n, "tags", ""
	}
	for _, k := range []string{"manifests", "blobs", "referrers"} {
		if i := strings.LastIndex(rest, "/"+k+"/"); i > 0 {
			return rest[:i], k, rest[i+len(k)+2:]
		}
	}
	return rest, "", ""
}

func (g *Gate) serveCatalog(w http.ResponseWriter, st *state) {
	repos := make([]string, 0, len(st.repos))
	for n := range st.repos {
		repos = append(repos, n)
	}
	slices.Sort(repos)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"repositories": repos})
}

// serveTags lists the trusted tags, not the upstream's.
func (g *Gate) serveTags(w http.ResponseWriter, st *state, repo string) {
	tags := make([]string, 0, len(st.repos[repo]))
	for t := range st.repos[repo] {
		tags = append(tags, t)
	}
	slices.Sort(tags)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": tags})
}

// upstreamFailed answers an upstream failure: a refusal when upstream
// lost or altered what TUF trusts, a 502 when it could not be reached.
func (g *Gate) upstreamFailed(w http.ResponseWriter, r *http.Request, repo, ref string, err error) {
	var (
		de *digestError
		se *sizeError
	)
	switch {
	case errors.Is(err, errNotFound):
		g.refuse(w, r, repo, ref, "the trusted content is not in the upstream registry (deleted or replaced there): "+err.Error())
	case errors.As(err, &de):
		g.refuse(w, r, repo, ref, err.Error()+": refused")
	case errors.As(err, &se):
		g.refuse(w, r, repo, ref, err.Error())
	default:
		g.log.Warn("upstream", "name", repo, "reference", ref, "err", err)
		ociError(w, http.StatusBadGateway, "UNAVAILABLE", "the upstream registry failed: "+err.Error())
	}
}

func writeManifest(w http.ResponseWriter, r *http.Request, m *manifest, fallbackType string) {
	mt := fallbackType
	if p, err := parseManifest(m.raw); err == nil && p.MediaType != "" {
		mt = p.MediaType
	} else if m.mediaType != "" {
		mt = m.mediaType
	}
	w.Header().Set("Content-Type", mt)
	w.Header().Set("Docker-Content-Digest", m.digest.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(m.raw)))
	w.Header().Set("Etag", `"`+m.digest.String()+`"`)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(m.raw)
}

func parseDigest(ref string) (v1.Hash, bool) {
	if !strings.HasPrefix(ref, "sha256:") {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash(ref)
	return h, err == nil
}
