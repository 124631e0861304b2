package bundle

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

// bundle owns the formats and nothing that moves them: no network (the
// networked export is bundle/export), no signing job (bundle/approve), no
// registry push (mirror), and no production package depends on the
// simulator.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/bundle",
		"net/http",
		"github.com/google/go-containerregistry/pkg/v1/remote",
		"github.com/coldharbor/coldharbor/bundle/export",
		"github.com/coldharbor/coldharbor/bundle/approve",
		"github.com/coldharbor/coldharbor/mirror",
		"github.com/coldharbor/coldharbor/ceremony",
		"github.com/coldharbor/coldharbor/hsm/pivsim",
		"github.com/urfave/cli",
	)
}
