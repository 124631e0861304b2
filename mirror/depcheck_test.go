package mirror

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/mirror",
		"github.com/coldharbor/coldharbor/ceremony",
		// mirror reads the formats (bundle), never the jobs that make them.
		"github.com/coldharbor/coldharbor/bundle/export",
		"github.com/coldharbor/coldharbor/bundle/approve",
		"github.com/coldharbor/coldharbor/hsm/pivsim",
		"github.com/urfave/cli",
	)
}
