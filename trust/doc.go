// Package trust owns the TUF repository directory of DESIGN.md: its layout,
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
package trust
