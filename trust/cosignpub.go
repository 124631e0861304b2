package trust

import (
	"crypto/sha256"
	"fmt"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// CosignPubTarget is the name of the target that publishes the cosign keys.
const CosignPubTarget = "cosign.pub"

// CosignPub renders root's targets keys as concatenated PEM public keys, in
// the order root lists them: the file published as the "cosign.pub" target.
// cosign reads the first key of such a file; coldharbor verify reads all.
func CosignPub(root *metadata.Metadata[metadata.RootType]) ([]byte, error) {
	keys, err := RoleKeys(root, Targets)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("root has no targets keys")
	}
	var out []byte
	for _, k := range keys {
		p, err := cryptoutils.MarshalPublicKeyToPEM(k.Public)
		if err != nil {
			return nil, err
		}
		out = append(out, p...)
	}
	return out, nil
}

// FileTarget describes data as the target name (length and sha256).
func FileTarget(name string, data []byte) *metadata.TargetFiles {
	s := sha256.Sum256(data)
	return &metadata.TargetFiles{Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": s[:]}, Path: name}
}
