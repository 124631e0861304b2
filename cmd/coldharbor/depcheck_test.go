package main

import (
	"testing"

	"github.com/coldharbor/coldharbor/internal/depcheck"
)

// The shipped binary never contains the software YubiKey.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "github.com/coldharbor/coldharbor/cmd/coldharbor", "github.com/coldharbor/coldharbor/hsm/pivsim")
}
