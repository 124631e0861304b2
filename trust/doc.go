// Package trust owns the TUF repository directory (docs/design.md): its layout,
// building and signing the next version of a role, verifying a directory as
// a TUF client would, expiry policy and atomic publication.
//
// Metadata is always built and parsed with go-tuf/v2; signature, threshold,
// version and expiry checks are go-tuf's (trustedmetadata), never ours. This
// package knows nothing of registries.
//
// Layout of a repository directory:
//
//	metadata/N.root.json, N.targets.json, N.snapshot.json, timestamp.json
//	targets/<sha256hex>.<name>   consistent-snapshot target files
//	transcript.jsonl             the ceremony record (public)
//	.coldharbor/                 private state: lock, pinned root (never published)
//
// # Who takes the lock
//
// One rule: a job that changes a repository directory takes its lock
// itself (LockState: Lock, then LoadState) for the whole of its
// load-check-write — trust's Refresh and ApplyRefresh, mirror.Import (once
// to plan, once to publish), bundle/approve's Plan.Record, and the
// ceremony's init, sign and rotate. The building blocks those jobs share
// (LoadState, Publish, UpdatePin, Remove) never lock: they run inside a
// job that holds it. Callers of a job never lock (flock is per open file,
// so a second Lock in the same process would wait for itself). Readers
// (Verify, Status, a TUF client) take no lock: publication order keeps
// every moment consistent for them.
package trust
