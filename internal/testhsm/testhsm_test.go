package testhsm

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	a := NewToken(t, "")
	b := a.AddToken(t, "second")
	if !strings.HasPrefix(os.Getenv("SOFTHSM2_CONF"), os.TempDir()) {
		t.Errorf("SOFTHSM2_CONF=%s is not in a temporary directory", os.Getenv("SOFTHSM2_CONF"))
	}
	out, err := exec.Command("softhsm2-util", "--show-slots").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, l := range []string{a.Label, b.Label} {
		if !strings.Contains(string(out), "Label:            "+l) {
			t.Errorf("token %q is not in\n%s", l, out)
		}
	}
	if got := a.URI("object=k"); got != "pkcs11:token=coldharbor-test;object=k?module-path="+a.Module+"&pin-value=1234" {
		t.Errorf("URI %s", got)
	}
}
