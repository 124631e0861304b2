//go:build !cgo

package hsm

import (
	"context"
	"strings"
	"testing"
)

// A build without cgo keeps every other backend and says how to get this one.
func TestYubiKeyNoCgo(t *testing.T) {
	_, err := Open(context.Background(), "yubikey:")
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Fatalf("yubikey: without cgo: %v", err)
	}
}
