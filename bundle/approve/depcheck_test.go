package approve

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

// The signer runs air-gapped: it links no network client, and nothing of
// the export or the import.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/bundle/approve",
		"net/http",
		"github.com/google/go-containerregistry/pkg/v1/remote",
		"github.com/coldharbor/coldharbor/bundle/export",
		"github.com/coldharbor/coldharbor/mirror",
		"github.com/coldharbor/coldharbor/ceremony",
		"github.com/coldharbor/coldharbor/hsm/pivsim",
		"github.com/urfave/cli",
	)
}
