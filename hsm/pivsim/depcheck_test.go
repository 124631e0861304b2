package pivsim

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

const self = "github.com/coldharbor/coldharbor/hsm/pivsim"

// The simulator is a card, nothing more: it must not reach TUF, registries
// or the CLI, nor the hsm package whose tests plug it in.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, self,
		"github.com/coldharbor/coldharbor/trust",
		"github.com/theupdateframework/go-tuf",
		"github.com/google/go-containerregistry",
		"github.com/urfave/cli",
	)
	out, err := exec.Command("go", "list", "-deps", self).Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if slices.Contains(strings.Fields(string(out)), "github.com/coldharbor/coldharbor/hsm") {
		t.Error("pivsim depends on hsm: hsm's tests could not use it")
	}
}
