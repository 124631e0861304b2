package mirror

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/mirror",
		"github.com/coldharbor/coldharbor/ceremony",
		"github.com/coldharbor/coldharbor/hsm/pivsim",
		"github.com/urfave/cli",
	)
}
