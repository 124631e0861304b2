// Package httpclient builds the one HTTP transport every registry and TUF
// connection of coldharbor goes through: bounded in time at every step
// (dial, TLS handshake, response header, and no byte either way for an idle
// period), and plain HTTP only to loopback or to a host the user named.
//
// go-containerregistry falls back to plain HTTP by itself for loopback,
// RFC 1918 addresses and *.localhost names (pkg/name/registry.go), after its
// HTTPS attempt fails: registry credentials would then go out in clear text
// to a private-address registry whose TLS is broken or intercepted. This
// transport refuses those requests before they are sent.
package httpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Timeouts bound each step of a connection. A zero field takes the default.
type Timeouts struct {
	// Dial: TCP connect. Default 30 s.
	Dial time.Duration
	// TLSHandshake. Default 30 s.
	TLSHandshake time.Duration
	// ResponseHeader: from the end of the request to the response header.
	// Default 5 min: registries on slow storage may take minutes to commit
	// a large blob upload.
	ResponseHeader time.Duration
	// Idle: the longest a connection may go without a byte read or written
	// while in use (a stalled body, upload or download). Default 5 min.
	Idle time.Duration
}

// DefaultTimeouts are the timeouts New uses when none are given.
func DefaultTimeouts() Timeouts {
	return Timeouts{Dial: 30 * time.Second, TLSHandshake: 30 * time.Second, ResponseHeader: 5 * time.Minute, Idle: 5 * time.Minute}
}

func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts()
	if t.Dial <= 0 {
		t.Dial = d.Dial
	}
	if t.TLSHandshake <= 0 {
		t.TLSHandshake = d.TLSHandshake
	}
	if t.ResponseHeader <= 0 {
		t.ResponseHeader = d.ResponseHeader
	}
	if t.Idle <= 0 {
		t.Idle = d.Idle
	}
	return t
}

type options struct {
	timeouts Timeouts
	insecure map[string]bool
	tls      *tls.Config
	noProxy  bool
	http1    bool
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Option configures New. Options are applied in order.
type Option func(*options) error

// WithTimeouts sets the timeouts; zero fields keep their default
// (DefaultTimeouts).
func WithTimeouts(t Timeouts) Option {
	return func(o *options) error {
		if t.Dial < 0 || t.TLSHandshake < 0 || t.ResponseHeader < 0 || t.Idle < 0 {
			return errors.New("httpclient: negative timeout")
		}
		o.timeouts = t
		return nil
	}
}

// WithInsecureHosts allows plain HTTP to these hosts ("host" or
// "host:port", as given to --insecure-registry). Default: none; loopback
// (127.0.0.0/8, ::1, localhost) is always allowed.
func WithInsecureHosts(hosts ...string) Option {
	return func(o *options) error {
		for _, h := range hosts {
			h = strings.ToLower(strings.TrimSpace(h))
			if h == "" || strings.ContainsAny(h, "/ ") {
				return fmt.Errorf("httpclient: %q is not a host or host:port", h)
			}
			o.insecure[h] = true
		}
		return nil
	}
}

// WithTLSConfig sets the TLS configuration (tests: a private CA). Default:
// the system roots, and SSL_CERT_FILE when set, TLS 1.2 or later.
func WithTLSConfig(c *tls.Config) Option {
	return func(o *options) error { o.tls = c; return nil }
}

// WithDialContext replaces the TCP dialer (tests: reach a test server
// under another name). Default: a net.Dialer with the Dial timeout.
func WithDialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) error { o.dial = dial; return nil }
}

// WithHTTP1 speaks HTTP/1.1 only, one request per connection at a time.
// Default: HTTP/2 where the server offers it. A proxy that streams large
// blobs through (coldharbor serve) reads each straight from its own TLS
// connection instead of through HTTP/2's frame buffers and flow control.
func WithHTTP1() Option {
	return func(o *options) error { o.http1 = true; return nil }
}

// WithoutProxy ignores HTTP(S)_PROXY. Default: the environment's proxy is used.
func WithoutProxy() Option {
	return func(o *options) error { o.noProxy = true; return nil }
}

// New returns the transport. It is safe for concurrent use; share one per
// process so connections are reused.
func New(opts ...Option) (http.RoundTripper, error) {
	o := options{insecure: map[string]bool{}}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	t := o.timeouts.withDefaults()
	dial := (&net.Dialer{Timeout: t.Dial, KeepAlive: 30 * time.Second}).DialContext
	if o.dial != nil {
		dial = o.dial
	}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: t.Idle}, nil
		},
		ForceAttemptHTTP2:     !o.http1,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   t.TLSHandshake,
		ResponseHeaderTimeout: t.ResponseHeader,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       o.tls,
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if o.noProxy {
		tr.Proxy = nil
	}
	return &guard{next: tr, insecure: o.insecure}, nil
}

// Client returns an *http.Client over New's transport with an overall
// deadline for each request (0: none).
func Client(overall time.Duration, opts ...Option) (*http.Client, error) {
	tr, err := New(opts...)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr, Timeout: overall}, nil
}

// PlainHTTPError is a request over plain HTTP to a host that may not get one.
// Err, when set, is the failed HTTPS request to a host that answered in
// plain HTTP.
type PlainHTTPError struct {
	Host string
	Err  error
}

func (e *PlainHTTPError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s answers plain HTTP, not HTTPS: name it with --insecure-registry %s to allow plain HTTP (credentials would travel in clear text): %v", e.Host, e.Host, e.Err)
	}
	return fmt.Sprintf("refusing plain HTTP to %s: only loopback or a host named with --insecure-registry %s gets it (credentials would travel in clear text)", e.Host, e.Host)
}

// guard refuses plain HTTP except to loopback and named hosts.
type guard struct {
	next     http.RoundTripper
	insecure map[string]bool
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.plainAllowed(req.URL.Host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &PlainHTTPError{Host: req.URL.Host}
	}
	resp, err := g.next.RoundTrip(req)
	var rh tls.RecordHeaderError
	if err != nil && req.URL.Scheme == "https" && errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" && !g.plainAllowed(req.URL.Host) {
		return nil, &PlainHTTPError{Host: req.URL.Host, Err: err}
	}
	return resp, err
}

func (e *PlainHTTPError) Unwrap() error { return e.Err }

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (g *guard) CloseIdleConnections() {
	if c, ok := g.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (g *guard) plainAllowed(hostport string) bool {
	return named(g.insecure, hostport) || IsLoopback(hostOnly(strings.ToLower(hostport)))
}

// Named reports whether hostport ("host" or "host:port") is one of hosts,
// as given to --insecure-registry (WithInsecureHosts): the same match the
// transport makes before it allows plain HTTP.
func Named(hosts []string, hostport string) bool {
	m := map[string]bool{}
	for _, h := range hosts {
		m[strings.ToLower(strings.TrimSpace(h))] = true
	}
	return named(m, hostport)
}

func named(insecure map[string]bool, hostport string) bool {
	hostport = strings.ToLower(hostport)
	return insecure[hostport] || insecure[hostOnly(hostport)]
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// IsLoopback reports whether host (no port) is a loopback address or
// "localhost" (not *.localhost: a name any resolver may answer).
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// idleConn fails a read or write that sees no progress for idle: a peer
// that accepts a connection and then stalls cannot hold a job forever.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
