package gate

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

// The gate sits between the command and trust: it never signs, never
// imports, and never opens a key (trust itself imports hsm).
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/gate",
		"github.com/coldharbor/coldharbor/ceremony",
		"github.com/coldharbor/coldharbor/mirror",
		"github.com/coldharbor/coldharbor/bundle",
		"github.com/coldharbor/coldharbor/hsm/pivsim",
		"github.com/urfave/cli",
	)
}
