package regsession

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// TestNameOptions: a reference or registry whose host (or host:port) was
// named with --insecure-registry parses for plain HTTP; others do not.
func TestNameOptions(t *testing.T) {
	insecure := []string{"registry.lan:5000", "Other.Example"}
	for _, tc := range []struct {
		ref    string
		scheme string
	}{
		{"registry.lan:5000/app:1", "http"},
		{"REGISTRY.lan:5000/app@sha256:" + "0123456789012345678901234567890123456789012345678901234567890123", "http"},
		{"registry.lan:5001/app:1", "https"},
		{"registry.lan/app:1", "https"},
		{"other.example:443/a/b:1", "http"},
		{"other.example", "http"},
		{"registry.example/app:1", "https"},
		{"index.docker.io/library/ubuntu:22.04", "https"},
	} {
		ref, err := name.ParseReference(tc.ref, NameOptions(insecure, tc.ref, name.StrictValidation)...)
		if err != nil {
			reg, rerr := name.NewRegistry(tc.ref, NameOptions(insecure, tc.ref, name.StrictValidation)...)
			if rerr != nil {
				t.Fatalf("%s: %v / %v", tc.ref, err, rerr)
			}
			if got := reg.Scheme(); got != tc.scheme {
				t.Errorf("%s: scheme %s, want %s", tc.ref, got, tc.scheme)
			}
			continue
		}
		if got := ref.Context().Scheme(); got != tc.scheme {
			t.Errorf("%s: scheme %s, want %s", tc.ref, got, tc.scheme)
		}
	}
	if opts := NameOptions(nil, "registry.lan:5000/app:1"); len(opts) != 0 {
		t.Errorf("no hosts named: %d options", len(opts))
	}
}
