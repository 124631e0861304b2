package bundle

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

// bundle owns the formats; the registry push side is mirror's, and no
// production package depends on the simulator.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/bundle",
		"github.com/coldharbor/coldharbor/mirror",
		"github.com/coldharbor/coldharbor/ceremony",
		"github.com/coldharbor/coldharbor/hsm/pivsim",
		"github.com/urfave/cli",
	)
}
