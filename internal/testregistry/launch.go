// Package testregistry runs the CNCF distribution registry that Debian ships
// as docker-registry on a loopback port, with TLS from a throwaway CA and
// htpasswd auth, so that end-to-end tests and the demo talk to a real
// registry the way they would in an isolated network: HTTPS with a private
// CA, credentials from a Docker config, nothing reachable from outside.
package testregistry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/crypto/bcrypt"

	"github.com/coldharbor/coldharbor/internal/testenv"
)

// Binary is where the Debian docker-registry package installs the registry.
const Binary = "/usr/bin/docker-registry"

const (
	// bindAttempts bounds the retries when another process takes the free
	// port between our probe and the registry's bind.
	bindAttempts = 3
	// readyTimeout bounds one attempt's wait for /v2/ to answer; the
	// registry is usually up in well under a second.
	readyTimeout = 10 * time.Second
	readyPoll    = 25 * time.Millisecond
	// certLifetime covers a long demo session; every launch makes new certs.
	certLifetime = 7 * 24 * time.Hour
)

// Registry describes a running registry: what a client needs to reach it.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of image references.
	Host string
	// CAFile is the PEM of the CA that signed the registry's certificate;
	// clients must trust it (SSL_CERT_FILE for subprocesses).
	CAFile string
	// User and Password are the only credentials the registry accepts.
	User, Password string
	// DockerConfigDir holds a config.json with the credentials for Host, for
	// tools that read DOCKER_CONFIG (crane, cosign, coldharbor itself).
	DockerConfigDir string

	roots *x509.CertPool
}

// Transport returns a transport that trusts only the registry's CA, so a
// test proves that nothing silently falls back to plain HTTP or to the
// system roots.
func (r *Registry) Transport() http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: r.roots, MinVersion: tls.VersionTLS12}
	// Loopback only: a proxy from the environment must never see the traffic.
	tr.Proxy = nil
	return tr
}

// Keychain returns the registry's credentials for Host and anonymous access
// for anything else, for go-containerregistry clients in the test process.
func (r *Registry) Keychain() authn.Keychain {
	return keychain{host: r.Host, cfg: authn.AuthConfig{Username: r.User, Password: r.Password}}
}

// Env returns the variables a subprocess (cosign, crane, the coldharbor
// binary) needs to authenticate to the registry and trust its certificate;
// append them to os.Environ().
func (r *Registry) Env() []string {
	return []string{"DOCKER_CONFIG=" + r.DockerConfigDir, "SSL_CERT_FILE=" + r.CAFile}
}

type keychain struct {
	host string
	cfg  authn.AuthConfig
}

func (k keychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	if res.RegistryStr() == k.host {
		return authn.FromConfig(k.cfg), nil
	}
	return authn.Anonymous, nil
}

// Process is a running registry, for callers that outlive a test: the demo
// reports its PID and notices when it dies.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// Pid is the registry's process ID, for scripts that outlive the launcher.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the registry process has exited, for whatever reason.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop kills the registry and waits for it to exit. Its storage holds
// nothing worth a graceful shutdown.
func (p *Process) Stop() error {
	select {
	case <-p.done:
	default:
		if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("kill docker-registry (pid %d): %w", p.Pid(), err)
		}
		<-p.done
	}
	return nil
}

// Launch starts docker-registry with its configuration, certificates,
// htpasswd file and storage in dir, and returns once it answers on /v2/.
// The registry runs until Stop or until ctx is done. Its output goes to log,
// which may be nil. Start wraps Launch for tests; the demo calls it directly.
func Launch(ctx context.Context, dir string, log io.Writer) (*Registry, *Process, error) {
	if log == nil {
		log = io.Discard
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("registry directory: %w", err)
	}
	caPEM, serverCert, serverKey, err := makeCerts()
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	user, password, htpasswd, err := makeCredentials()
	if err != nil {
		return nil, nil, err
	}
	r := &Registry{
		CAFile:          filepath.Join(dir, "ca.pem"),
		User:            user,
		Password:        password,
		DockerConfigDir: filepath.Join(dir, "docker"),
		roots:           roots,
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{r.CAFile, caPEM, 0o644},
		{filepath.Join(dir, "server.pem"), serverCert, 0o644},
		{filepath.Join(dir, "server-key.pem"), serverKey, 0o600},
		{filepath.Join(dir, "htpasswd"), htpasswd, 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return nil, nil, fmt.Errorf("write %s: %w", f.path, err)
		}
	}

	var lastErr error
	for range bindAttempts {
		port, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		r.Host = "127.0.0.1:" + strconv.Itoa(port)
		p, inUse, err := launchOnce(ctx, dir, r, log)
		if err == nil {
			if err := writeDockerConfig(r); err != nil {
				_ = p.Stop()
				return nil, nil, err
			}
			return r, p, nil
		}
		lastErr = err
		if !inUse {
			break
		}
	}
	return nil, nil, lastErr
}

// launchOnce starts the registry on r.Host and waits until it is ready. It
// reports whether a failure was a lost race for the port, which is worth
// another try on a new one.
func launchOnce(ctx context.Context, dir string, r *Registry, log io.Writer) (p *Process, inUse bool, err error) {
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, configYAML(dir, r.Host), 0o600); err != nil {
		return nil, false, fmt.Errorf("write registry config: %w", err)
	}
	var out testenv.Output
	cmd := exec.CommandContext(ctx, Binary, "serve", config)
	cmd.Stdout = io.MultiWriter(log, &out)
	cmd.Stderr = cmd.Stdout
	cmd.Env = registryEnv()
	// Bounds Wait should anything inherit the output pipes.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("start %s: %w", Binary, err)
	}
	p = &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	if err := waitReady(ctx, p, r); err != nil {
		_ = p.Stop()
		// The output is complete once the process has been waited for.
		msg := strings.TrimSpace(out.String())
		return nil, strings.Contains(msg, "address already in use"),
			fmt.Errorf("docker-registry on %s: %w; its output: %s", r.Host, err, msg)
	}
	return p, false, nil
}

// waitReady polls /v2/ until it answers 401: TLS works with our CA and auth
// is on. A 200 would mean the registry ignored the htpasswd section.
func waitReady(ctx context.Context, p *Process, r *Registry) error {
	client := &http.Client{Transport: r.Transport(), Timeout: time.Second}
	defer client.CloseIdleConnections()
	// A registry that dies (a lost port race) must not leave a request
	// hanging until its timeout on whoever holds the port.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	url := "https://" + r.Host + "/v2/"
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("readiness request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			return fmt.Errorf("GET %s answered %s, want 401 Unauthorized", url, resp.Status)
		}
		last = err
		select {
		case <-p.Done():
			return fmt.Errorf("exited before it was ready: %v", p.err)
		default:
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited before it was ready: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for readiness: %w", ctx.Err())
		case <-time.After(readyPoll):
		}
	}
	return fmt.Errorf("not ready after %s: %w", readyTimeout, last)
}

// registryEnv is the test process's environment without REGISTRY_*
// variables, which distribution would read as overrides of its config.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

func configYAML(dir, host string) []byte {
	q := strconv.Quote // a Go-quoted path is a valid YAML double-quoted scalar
	return fmt.Appendf(nil, `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: %s
  tls:
    certificate: %s
    key: %s
auth:
  htpasswd:
    realm: coldharbor-test
    path: %s
`, q(filepath.Join(dir, "storage")), q(host), q(rand.Text()),
		q(filepath.Join(dir, "server.pem")), q(filepath.Join(dir, "server-key.pem")),
		q(filepath.Join(dir, "htpasswd")))
}

// freePort asks the kernel for a free loopback port. The registry binds it
// after we release it; Launch retries if someone else got there first.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// makeCredentials returns a random user and password and their htpasswd line.
func makeCredentials() (user, password string, htpasswd []byte, err error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, fmt.Errorf("random credentials: %w", err)
	}
	user, password = "test-"+hex.EncodeToString(b[:4]), hex.EncodeToString(b[4:])
	// distribution only accepts bcrypt entries. MinCost because the registry
	// checks the hash on every request and this password guards nothing.
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return "", "", nil, fmt.Errorf("hash the registry password: %w", err)
	}
	return user, password, fmt.Appendf(nil, "%s:%s\n", user, hash), nil
}

func writeDockerConfig(r *Registry) error {
	auth := base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Password))
	data, err := json.Marshal(map[string]any{
		"auths": map[string]any{r.Host: map[string]string{"auth": auth}},
	})
	if err != nil {
		return fmt.Errorf("docker config: %w", err)
	}
	if err := os.MkdirAll(r.DockerConfigDir, 0o700); err != nil {
		return fmt.Errorf("docker config directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.DockerConfigDir, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("write docker config: %w", err)
	}
	return nil
}

// makeCerts returns a fresh CA certificate and a server certificate and key
// for 127.0.0.1 and localhost signed by it, all PEM. The CA key is never
// written: nothing else should be able to mint certificates it vouches for.
func makeCerts() (caPEM, certPEM, keyPEM []byte, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA key: %w", err)
	}
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "coldharbor test registry CA"},
		NotBefore:             now.Add(-time.Hour), // tolerate a little clock skew
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err = x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("server key: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("server key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		nil
}

func serial() *big.Int {
	// 128 random bits; crypto/rand.Int does not fail on a valid max.
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return n
}
