//go:build !cgo

package hsm

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestPKCS11WithoutCgo(t *testing.T) {
	mod := fakeModule(t)
	_, err := Open(context.Background(), "pkcs11:token=t;object=k?module-path="+mod)
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Errorf("Open: got %v", err)
	}
	if _, err := List(context.Background(), WithPKCS11Modules(mod)); !errors.Is(err, ErrNotSupported) {
		t.Errorf("List: got %v", err)
	}
}
