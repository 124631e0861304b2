package hsm

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

// The SoftHSM2 harness is for tests only.
func TestPKCS11Dependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/hsm",
		"github.com/coldharbor/coldharbor/internal/testhsm",
		"github.com/coldharbor/coldharbor/internal/testenv",
	)
}
