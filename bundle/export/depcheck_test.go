package export

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

// The export reads registries and writes a bundle: it signs nothing and
// pushes nothing.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/bundle/export",
		"github.com/coldharbor/coldharbor/bundle/approve",
		"github.com/coldharbor/coldharbor/mirror",
		"github.com/coldharbor/coldharbor/ceremony",
		"github.com/coldharbor/coldharbor/hsm/pivsim",
		"github.com/urfave/cli",
	)
}
