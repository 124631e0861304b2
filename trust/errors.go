package trust

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// VerificationError is a refusal, and the only one: the repository or an
// input does not verify (signature, threshold, rollback, expiry, digest, a
// malformed file). The CLI exits 3 on it. It names what failed so that an
// operator can tell an attack from a stale bundle.
type VerificationError struct {
	// What failed: a TUF role (Root, Targets, Snapshot, Timestamp) or one
	// of the What… names below.
	What    string
	Version int64 // 0 when unknown
	// KeyIDs are the keys the role trusts (for a threshold failure) or the
	// key that failed.
	KeyIDs  []string
	Expires time.Time // set for expiry failures
	Reason  string
	Err     error // the underlying error (go-tuf's, a format error), if any
}

// What a refusal names when it is not a TUF role.
const (
	WhatApproval    = "approval"    // an approval file, or its binding to a bundle
	WhatBundle      = "bundle"      // a bundle or refresh bundle: its format or content
	WhatCosign      = "cosign"      // a cosign signature or payload
	WhatClient      = "tuf"         // what a TUF client (go-tuf's updater) refused
	WhatRepository  = "repository"  // a repository's roles, taken together
	WhatAttestation = "attestation" // a hardware key's attestation
	WhatTranscript  = "transcript"  // the ceremony's record
)

func (e *VerificationError) Error() string {
	var b strings.Builder
	b.WriteString("verification refused: ")
	b.WriteString(e.What)
	if e.Version > 0 {
		fmt.Fprintf(&b, " v%d", e.Version)
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if !e.Expires.IsZero() {
		fmt.Fprintf(&b, " (expired %s)", e.Expires.UTC().Format(time.RFC3339))
	}
	if len(e.KeyIDs) > 0 {
		ids := make([]string, len(e.KeyIDs))
		for i, id := range e.KeyIDs {
			ids[i] = short(id)
		}
		fmt.Fprintf(&b, " [keys %s]", strings.Join(ids, ", "))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *VerificationError) Unwrap() error { return e.Err }

// Errors that say what is missing; the CLI adds how to give it.
var (
	// ErrNotInitialised: dir holds no repository (no trusted root, no
	// targets): a ceremony creates one.
	ErrNotInitialised = errors.New("not an initialised coldharbor repository")
	// ErrSnapshotKeyNeeded: a refresh found the snapshot due and was given
	// no snapshot key.
	ErrSnapshotKeyNeeded = errors.New("the snapshot is due and no snapshot key was given")
)

// IsVerification reports whether err is (or wraps) a refusal.
func IsVerification(err error) bool {
	var v *VerificationError
	return errors.As(err, &v)
}

// AsRefusal returns err as a *VerificationError when it is one of go-tuf's
// verification failures (signatures, expiry, versions, lengths and hashes,
// a repository error), and err unchanged otherwise (I/O, downloads).
func AsRefusal(role string, err error) error {
	if err == nil || IsVerification(err) {
		return err
	}
	var repoErr *metadata.ErrRepository
	if tufReason(err) != "" || errors.As(err, &repoErr) {
		return refusal(role, 0, err)
	}
	return err
}

// refusal turns a go-tuf error met while loading role into a
// VerificationError with the reason spelled out.
func refusal(role string, version int64, err error) error {
	reason := tufReason(err)
	if reason == "" {
		reason = "does not verify"
	}
	return &VerificationError{What: role, Version: version, Reason: reason, Err: err}
}

// tufReason names go-tuf's verification failures; "" for any other error.
func tufReason(err error) string {
	var (
		unsigned *metadata.ErrUnsignedMetadata
		expired  *metadata.ErrExpiredMetadata
		badVer   *metadata.ErrBadVersionNumber
		eqVer    *metadata.ErrEqualVersionNumber
		lenHash  *metadata.ErrLengthOrHashMismatch
	)
	switch {
	case errors.As(err, &unsigned):
		return "signature threshold not met"
	case errors.As(err, &expired):
		return "metadata expired"
	case errors.As(err, &badVer), errors.As(err, &eqVer):
		return "version rollback or mismatch"
	case errors.As(err, &lenHash):
		return "length or hash mismatch"
	}
	return ""
}
