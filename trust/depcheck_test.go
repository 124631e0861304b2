package trust

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

// trust knows TUF, not registries, bundles or the CLI (docs/design.md).
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/trust",
		"github.com/google/go-containerregistry/pkg/v1/remote",
		"github.com/coldharbor/coldharbor/bundle",
		"github.com/coldharbor/coldharbor/mirror",
		"github.com/coldharbor/coldharbor/ceremony",
		"github.com/coldharbor/coldharbor/hsm/pivsim",
		"github.com/urfave/cli",
	)
}
