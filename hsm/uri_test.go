package hsm

import (
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		in      string
		scheme  Scheme
		path    string
		attrs   map[string]string
		query   map[string]string
		canon   string
		wantErr string
	}{
		{in: "file:cosign.key", scheme: SchemeFile, path: "cosign.key", canon: "file:cosign.key"},
		{in: "file:///abs/k.key", scheme: SchemeFile, path: "/abs/k.key", canon: "file:/abs/k.key"},
		{in: "keys/root.pub", scheme: SchemeFile, path: "keys/root.pub", canon: "file:keys/root.pub"},
		{in: "./a:b.key", scheme: SchemeFile, path: "./a:b.key"},
		{in: "yubikey:", scheme: SchemeYubiKey, attrs: map[string]string{}, canon: "yubikey:"},
		{in: "yubikey:serial=12345678;slot=9c", scheme: SchemeYubiKey, attrs: map[string]string{"serial": "12345678", "slot": "9c"}, canon: "yubikey:serial=12345678;slot=9c"},
		{in: "pkcs11:token=ch;object=ts?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234", scheme: SchemePKCS11,
			attrs: map[string]string{"token": "ch", "object": "ts"},
			query: map[string]string{"module-path": "/usr/lib/softhsm/libsofthsm2.so", "pin-value": "1234"},
			canon: "pkcs11:object=ts;token=ch?module-path=/usr/lib/softhsm/libsofthsm2.so"},
		{in: "pkcs11:token=My%20Token", scheme: SchemePKCS11, attrs: map[string]string{"token": "My Token"}, query: map[string]string{}},
		{in: "", wantErr: "empty"},
		{in: "file:", wantErr: "names no file"},
		{in: "gcpkms://projects/x", wantErr: `unknown key scheme "gcpkms"`},
		{in: "awskms:///alias/x?pin-value=9999", wantErr: "REDACTED"},
		{in: "yubikey:serial=1;serial=2", wantErr: "given twice"},
		{in: "yubikey:color=red", wantErr: "unknown attribute"},
		{in: "pkcs11:token", wantErr: "not name=value"},
		{in: "pkcs11:token=a?pin-value=1234&bad", wantErr: "REDACTED"},
		{in: "yubikey:serial=1;pin=123456", wantErr: "REDACTED"},
		{in: "pkcs11:token=a;pin-value=1234?module-path=/m.so", scheme: SchemePKCS11, attrs: map[string]string{"token": "a"}, canon: "pkcs11:token=a?module-path=/m.so"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := ParseURI(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURI(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "1234") || strings.Contains(err.Error(), "9999") || strings.Contains(err.Error(), "123456") {
					t.Fatalf("error leaks a PIN: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tt.in, err)
			}
			if u.Scheme != tt.scheme || u.Path != tt.path {
				t.Fatalf("got scheme %v path %q, want %v %q", u.Scheme, u.Path, tt.scheme, tt.path)
			}
			for k, v := range tt.attrs {
				if u.Attrs[k] != v {
					t.Errorf("attr %s = %q, want %q", k, u.Attrs[k], v)
				}
			}
			for k, v := range tt.query {
				if u.Query[k] != v {
					t.Errorf("query %s = %q, want %q", k, u.Query[k], v)
				}
			}
			if tt.canon != "" && u.String() != tt.canon {
				t.Errorf("String() = %q, want %q", u.String(), tt.canon)
			}
			if strings.Contains(u.String(), "pin-value") {
				t.Errorf("String() keeps the PIN: %q", u.String())
			}
		})
	}
}
