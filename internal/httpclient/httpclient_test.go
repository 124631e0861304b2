package httpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// recorder stands in for the network: it records what would have been sent.
type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req.URL.Scheme+"://"+req.URL.Host+" auth="+req.Header.Get("Authorization"))
	return nil, errors.New("recorder: no network")
}

// TestPlainHTTPOnlyLoopbackOrNamed (issue 11, finding 9): go-containerregistry
// tries plain HTTP for RFC 1918 addresses and *.localhost names; the
// transport lets it through only for loopback or a --insecure-registry host.
func TestPlainHTTPOnlyLoopbackOrNamed(t *testing.T) {
	rec := &recorder{}
	g := &guard{next: rec, insecure: map[string]bool{"registry.lan:5000": true, "10.9.9.9": true}}
	for _, tc := range []struct {
		url     string
		allowed bool
	}{
		{"http://127.0.0.1:5000/v2/", true},
		{"http://[::1]:5000/v2/", true},
		{"http://localhost:5000/v2/", true},
		{"http://registry.lan:5000/v2/", true},
		{"http://10.9.9.9:443/v2/", true},
		{"http://10.1.2.3:5000/v2/", false},
		{"http://192.168.1.10/v2/", false},
		{"http://172.16.0.1:5000/v2/", false},
		{"http://evil.localhost:5000/v2/", false},
		{"http://registry.lan:5001/v2/", false},
		{"https://10.1.2.3:5000/v2/", true},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		rec.reqs = nil
		_, err := g.RoundTrip(req)
		var pe *PlainHTTPError
		if refused := errors.As(err, &pe); refused == tc.allowed {
			t.Errorf("%s: refused=%v, want allowed=%v (%v)", tc.url, refused, tc.allowed, err)
		}
		if !tc.allowed && len(rec.reqs) != 0 {
			t.Errorf("%s: sent %v", tc.url, rec.reqs)
		}
	}
}

// TestRFC1918CredentialsNeverInClear drives go-containerregistry itself at a
// private address: its HTTPS attempt fails, and its plain-HTTP fallback must
// not reach the network.
func TestRFC1918CredentialsNeverInClear(t *testing.T) {
	rec := &recorder{}
	g := &guard{next: rec, insecure: map[string]bool{}}
	ref, err := name.ParseReference("10.1.2.3:5000/app:1")
	if err != nil {
		t.Fatal(err)
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: "robot", Password: "s3cret"})
	_, err = remote.Head(ref, remote.WithTransport(g), remote.WithAuth(auth), remote.WithContext(t.Context()))
	if err == nil {
		t.Fatal("Head succeeded through a recorder")
	}
	for _, r := range rec.reqs {
		if strings.HasPrefix(r, "http://") {
			t.Fatalf("a plain HTTP request went out: %s", r)
		}
	}
	if !strings.Contains(err.Error(), "--insecure-registry") {
		t.Logf("error: %v", err)
	}
}

// TestStalledServerTimesOut (issue 11, finding 4): a server that accepts and
// never answers, or stops mid-body, fails the request within the timeouts.
func TestStalledServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c) }() // reads, never answers
		}
	}()
	tr, err := New(WithTimeouts(Timeouts{ResponseHeader: 300 * time.Millisecond, Idle: 300 * time.Millisecond}), WithoutProxy())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/v2/")
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("no timeout: %v after %s", err, time.Since(start))
	}

	body := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // stalls mid-body
	}))
	defer body.Close()
	resp, err := (&http.Client{Transport: tr}).Get(body.URL)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a stalled body read: %v after %s", err, time.Since(start))
	}
}

// TestHTTPSAnsweredInPlainNamesFlag: an HTTPS request to a host that
// answers in plain HTTP fails with a PlainHTTPError naming
// --insecure-registry, unless the host is named (then the TLS error is
// returned as is, and go-containerregistry goes on to plain HTTP).
func TestHTTPSAnsweredInPlainNamesFlag(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := net.SplitHostPort(addr)
	alias := "registry.example:" + port
	var d net.Dialer
	dial := WithDialContext(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	})
	for _, named := range []bool{false, true} {
		var hosts []string
		if named {
			hosts = []string{alias}
		}
		c, err := Client(5*time.Second, WithoutProxy(), WithInsecureHosts(hosts...), dial)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Get("https://" + alias + "/v2/")
		var pe *PlainHTTPError
		if errors.As(err, &pe) == named || (!named && !strings.Contains(err.Error(), "--insecure-registry "+alias)) {
			t.Errorf("named %v: %v", named, err)
		}
		if named {
			if resp, err := c.Get("http://" + alias + "/v2/"); err != nil {
				t.Errorf("plain HTTP to a named host: %v", err)
			} else {
				resp.Body.Close()
			}
		}
	}
}

// TestWithHTTP1 (make bench, step d): a server that offers HTTP/2 is
// answered over HTTP/2 by default and over HTTP/1.1 with WithHTTP1.
func TestWithHTTP1(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	for _, tc := range []struct {
		opts  []Option
		major int
	}{
		{nil, 2},
		{[]Option{WithHTTP1()}, 1},
	} {
		c, err := Client(5*time.Second, append(tc.opts, WithoutProxy(), WithTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != tc.major {
			t.Errorf("options %d: answered over %s, want HTTP/%d", len(tc.opts), resp.Proto, tc.major)
		}
	}
}
