package testregistry

import (
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Launch retries on a new port only when the registry lost the port to
// someone else; this pins the message it recognises that by.
func TestLaunchOnceReportsPortInUse(t *testing.T) {
	Need(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	dir := t.TempDir()
	caPEM, cert, key, err := makeCerts()
	if err != nil {
		t.Fatal(err)
	}
	_, _, htpasswd, err := makeCredentials()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"server.pem": cert, "server-key.pem": key, "htpasswd": htpasswd} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	r := &Registry{Host: l.Addr().String(), roots: roots}

	p, inUse, err := launchOnce(t.Context(), dir, r, io.Discard)
	if err == nil {
		p.Stop()
		t.Fatal("launch on a taken port succeeded")
	}
	if !inUse {
		t.Fatalf("launch on a taken port: %v; not recognised as a lost port race", err)
	}
}
