package ceremony

import "errors"

// Errors a caller may need to tell apart. A refusal to trust something (a
// key's attestation, a root without its thresholds) is a
// *trust.VerificationError instead.
var (
	// ErrRepositoryExists: Init was asked to create a root of trust where
	// one is published. A repository's root is rotated, not replaced.
	ErrRepositoryExists = errors.New("already holds a TUF repository")
	// ErrPending: Init was asked to start where a ceremony waits for its
	// holders' signatures (Sign adds them, Status lists who is missing).
	ErrPending = errors.New("a ceremony is pending")
)
