// Package hsm turns a key URI into a signing key, whatever holds it.
//
// Three schemes name a key (docs/design.md, "Keys: one URI syntax everywhere"):
//
//	file:cosign.key                       an encrypted PEM in cosign's format
//	yubikey:serial=12345678;slot=9c       a PIV slot on a YubiKey
//	pkcs11:token=T;object=O?module-path=… a key on a PKCS#11 token (RFC 7512)
//
// A bare path is read as file:PATH, and a public-key PEM is accepted wherever
// only the public half is needed (keys held at another site).
//
// Every backend yields a [Signer]: a crypto.Signer that also satisfies
// sigstore's signature.Signer, which is what go-tuf signs metadata with.
// Keys are ECDSA P-256 only: go-tuf labels every ECDSA key
// ecdsa-sha2-nistp256, so a P-384 key would be verified with SHA-256.
//
// This package knows nothing of TUF or registries; it never logs a secret.
package hsm
