// Package testharbor runs a real Harbor core for end-to-end tests — the kit
// in ../shared/harbor, started and stopped with its harbor.sh on loopback
// ports of its own — and speaks the few Harbor API calls tests need:
// projects, project robot accounts, artifacts with their accessories, and
// the project's cosign policy.
//
// Start skips the test when the kit is not beside the repository, and fails
// it under CI=true, where the kit must be there. Every Harbor started is
// stopped when its test ends. Instances of different versions start
// concurrently; their state lives in folders of their own.
package testharbor

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coldharbor/coldharbor/internal/testenv"
)

// Versions the kit holds: the first is before Harbor recognised sigstore
// bundles (v2.15.0), the second after.
func Versions() []string { return []string{"v2.14.4", "v2.15.2"} }

// Admin credentials of a kit instance.
const (
	AdminUser     = "admin"
	AdminPassword = "Harbor12345"
)

const (
	startAttempts = 3               // another process may take a probed port before Harbor binds it
	startTimeout  = 3 * time.Minute // one attempt, first unpack included
	apiTimeout    = 30 * time.Second
	maxAPIBody    = 8 << 20
)

// Harbor is one running instance.
type Harbor struct {
	Version string // v2.14.4 or v2.15.2
	Host    string // 127.0.0.1:PORT: the API and the OCI registry (plain HTTP)
	URL     string // http://Host

	env    []string // harbor.sh's settings for this instance
	kit    string
	state  string
	client *http.Client
}

// KitScript returns the path of harbor.sh: COLDHARBOR_HARBOR_KIT if set,
// else ../shared/harbor beside the module root. It skips t when the kit is
// missing, or fails t under CI=true.
func KitScript(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("COLDHARBOR_HARBOR_KIT")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "..", "shared", "harbor")
	}
	script := filepath.Join(dir, "harbor.sh")
	if _, err := os.Stat(script); err != nil {
		testenv.Need(t, "the Harbor kit ("+script+")", "put it at ../shared/harbor beside the clone, or set COLDHARBOR_HARBOR_KIT")
	}
	return script
}

// Start runs Harbor version (one of Versions) for the life of t.
func Start(t testing.TB, version string) *Harbor {
	t.Helper()
	kit := KitScript(t)
	var lastErr error
	for range startAttempts {
		h, err := start(t.Context(), kit, version)
		if err == nil {
			t.Cleanup(func() {
				if err := h.Stop(); err != nil {
					t.Errorf("stop Harbor %s: %v", version, err)
				}
			})
			return h
		}
		lastErr = err
	}
	t.Fatalf("start Harbor %s: %v", version, lastErr)
	return nil
}

func start(ctx context.Context, kit, version string) (*Harbor, error) {
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	// PostgreSQL runs as the postgres user: its folder must be reachable.
	state, err := os.MkdirTemp("", "coldharbor-harbor-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(state, 0o755); err != nil {
		return nil, err
	}
	h := &Harbor{Version: version, kit: kit, state: state,
		Host:   fmt.Sprintf("127.0.0.1:%d", ports[0]),
		client: &http.Client{Timeout: apiTimeout, Transport: &http.Transport{Proxy: nil}}}
	h.URL = "http://" + h.Host
	h.env = append(os.Environ(), "HARBOR_TAG="+version, "STATE_DIR="+state, "READY_TIMEOUT=120",
		fmt.Sprintf("HARBOR_PORT=%d", ports[0]), fmt.Sprintf("PG_PORT=%d", ports[1]),
		fmt.Sprintf("REDIS_PORT=%d", ports[2]), fmt.Sprintf("REG_PORT=%d", ports[3])) // REG_PORT+1: registry debug
	unlock, err := lockKit(version)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := h.script(ctx, "start", startTimeout); err != nil {
		h.Stop()
		return nil, err
	}
	return h, nil
}

// Stop stops what Start started (harbor.sh stops its own PIDs) and removes
// the instance's state.
func (h *Harbor) Stop() error {
	err := h.script(context.Background(), "stop", time.Minute)
	if rmErr := os.RemoveAll(h.state); err == nil {
		err = rmErr
	}
	return err
}

// Logs returns the tail of harbor_core's log, for a failing test's report.
func (h *Harbor) Logs() string {
	b, _ := os.ReadFile(filepath.Join(h.state, "logs", "core.log"))
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func (h *Harbor) script(ctx context.Context, verb string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Output to a file, never a pipe: the servers harbor.sh starts inherit
	// it, and a pipe would keep Wait waiting for them.
	out, err := os.CreateTemp("", "harbor-sh-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, "bash", h.kit, verb)
	cmd.Env, cmd.Stdout, cmd.Stderr = h.env, out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		return fmt.Errorf("harbor.sh %s: %w\n%s", verb, err, b)
	}
	return nil
}

// lockKit serialises starts of one version across test processes: the
// first start unpacks the kit into a shared folder.
func lockKit(version string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "coldharbor-harbor-kit-"+version+".lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		p := l.Addr().(*net.TCPAddr).Port
		if len(ports) == 3 { // the registry's port and the next (its debug port)
			next, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
			if err != nil {
				continue
			}
			held = append(held, next)
			ports = append(ports, p, p+1)
			continue
		}
		ports = append(ports, p)
	}
	return ports, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// API calls Harbor's REST API (/api/v2.0 + path) as the admin, sending body
// as JSON when it is not nil and decoding the answer into out when it is
// not nil. Any status other than 2xx is an error that quotes the answer.
func (h *Harbor) API(ctx context.Context, method, path string, body, out any) error {
	return h.APIAs(ctx, AdminUser, AdminPassword, method, path, body, out)
}

// APIAs is API with other credentials (a robot's).
func (h *Harbor) APIAs(ctx context.Context, user, password, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.URL+"/api/v2.0"+path, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(user, password)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// CreateProject creates a private project.
func (h *Harbor) CreateProject(t testing.TB, project string) {
	t.Helper()
	if err := h.API(t.Context(), "POST", "/projects", map[string]any{"project_name": project}, nil); err != nil {
		t.Fatal(err)
	}
}

// CreateRobot creates a project-level robot account that may push and pull
// in project (the least an import needs) and returns its name and secret.
func (h *Harbor) CreateRobot(t testing.TB, project, robot string) (user, secret string) {
	t.Helper()
	var out struct{ Name, Secret string }
	req := map[string]any{"name": robot, "level": "project", "duration": -1,
		"permissions": []any{map[string]any{"kind": "project", "namespace": project, "access": []any{
			map[string]string{"resource": "repository", "action": "push"},
			map[string]string{"resource": "repository", "action": "pull"}}}}}
	if err := h.API(t.Context(), "POST", "/robots", req, &out); err != nil {
		t.Fatal(err)
	}
	return out.Name, out.Secret
}

// SetCosignPolicy switches the project's "cosign signature required" policy
// (enable_content_trust_cosign) on or off.
func (h *Harbor) SetCosignPolicy(t testing.TB, project string, on bool) {
	t.Helper()
	req := map[string]any{"metadata": map[string]string{"enable_content_trust_cosign": fmt.Sprint(on)}}
	if err := h.API(t.Context(), "PUT", "/projects/"+url.PathEscape(project), req, nil); err != nil {
		t.Fatal(err)
	}
}

// Artifact is one artifact as Harbor lists it, with its accessories.
type Artifact struct {
	Digest      string      `json:"digest"`
	MediaType   string      `json:"manifest_media_type"`
	Tags        []Tag       `json:"tags"`
	Accessories []Accessory `json:"accessories"`
	References  []Reference `json:"references"` // an index's children
}

// Tag is one tag of an artifact.
type Tag struct {
	Name string `json:"name"`
}

// Accessory is a signature (type "signature.cosign") or other artifact
// Harbor links to its subject.
type Accessory struct {
	Type          string `json:"type"`
	Digest        string `json:"digest"`
	SubjectDigest string `json:"subject_artifact_digest"`
}

// Reference is one child of an index.
type Reference struct {
	ChildDigest string `json:"child_digest"`
}

// Artifacts lists the artifacts of project/repository with their
// accessories and children (the first 100: tests hold fewer).
func (h *Harbor) Artifacts(t testing.TB, project, repository string) []Artifact {
	t.Helper()
	var out []Artifact
	path := fmt.Sprintf("/projects/%s/repositories/%s/artifacts?with_accessory=true&with_tag=true&page_size=100",
		url.PathEscape(project), RepoPath(repository))
	if err := h.API(t.Context(), "GET", path, nil, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Accessories lists the accessories of one artifact, by digest: also those
// of an index's children, which the artifact list leaves out.
func (h *Harbor) Accessories(t testing.TB, project, repository, digest string) []Accessory {
	t.Helper()
	var out []Accessory
	path := fmt.Sprintf("/projects/%s/repositories/%s/artifacts/%s/accessories?page_size=100",
		url.PathEscape(project), RepoPath(repository), digest)
	if err := h.API(t.Context(), "GET", path, nil, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// RepoPath escapes a repository name inside a project for an API path:
// Harbor wants "/" as %252F (escaped twice).
func RepoPath(repository string) string {
	return strings.ReplaceAll(repository, "/", "%252F")
}

// WriteDockerConfig writes dir/config.json with user's credentials for the
// instance, as a site's machine would hold them; point DOCKER_CONFIG at dir.
func (h *Harbor) WriteDockerConfig(dir, user, password string) error {
	cfg, err := json.Marshal(map[string]any{"auths": map[string]any{
		h.Host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}}})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o600)
}
