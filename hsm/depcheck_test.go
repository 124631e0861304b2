package hsm

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

// hsm is the bottom layer: no TUF, no registries, no simulator in production.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/hsm",
		"github.com/theupdateframework/go-tuf",
		"github.com/google/go-containerregistry/pkg/v1",
		"github.com/coldharbor/coldharbor/trust",
		"github.com/coldharbor/coldharbor/hsm/pivsim",
		"github.com/urfave/cli",
	)
}
