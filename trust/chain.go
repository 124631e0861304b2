package trust

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// RootFile is one root version as bytes, as it travels (an approval
// carries the versions a rotation added) or lies in metadata/N.root.json.
type RootFile struct {
	Version int64
	Bytes   []byte
}

// rootChain is the one place a root chain is walked (TUF spec 5.3.4): each
// next root must be signed by the threshold of the root before it and by
// its own, and go-tuf's trustedmetadata checks both, with the versions.
type rootChain struct {
	tm *trustedmetadata.TrustedMetadata
}

// startChain trusts anchor as it is (a pinned root, or root v1 at a
// ceremony); go-tuf checks that it is signed by its own threshold.
func startChain(anchor []byte) (*rootChain, error) {
	tm, err := trustedmetadata.New(anchor)
	if err != nil {
		return nil, refusal(Root, 0, fmt.Errorf("trusted root: %w", err))
	}
	return &rootChain{tm: tm}, nil
}

func (c *rootChain) root() *metadata.Metadata[metadata.RootType] { return c.tm.Root }

// next verifies the root that follows (version v, for messages).
func (c *rootChain) next(v int64, data []byte) (*metadata.Metadata[metadata.RootType], error) {
	r, err := c.tm.UpdateRoot(data)
	if err != nil {
		return nil, refusal(Root, v, err)
	}
	return r, nil
}

// walk reads N+1.root.json from src for as long as it exists.
func (c *rootChain) walk(ctx context.Context, src Source) error {
	for v := c.root().Signed.Version + 1; ; v++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := src.ReadMeta(Root, v)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := c.next(v, data); err != nil {
			return err
		}
	}
}

// walkRoots starts from anchor and walks src's root chain as far as it goes.
func walkRoots(ctx context.Context, anchor []byte, src Source) (*trustedmetadata.TrustedMetadata, error) {
	c, err := startChain(anchor)
	if err != nil {
		return nil, err
	}
	if err := c.walk(ctx, src); err != nil {
		return nil, err
	}
	return c.tm, nil
}

// UpdateRoots verifies roots that follow trusted, oldest first, as a client
// updating its root does. It returns the newest root (trusted's own when
// next is empty) and each root after trusted, verified. Any failure is a
// *VerificationError naming the root version.
func UpdateRoots(trusted []byte, next ...RootFile) (*metadata.Metadata[metadata.RootType], []*metadata.Metadata[metadata.RootType], error) {
	c, err := startChain(trusted)
	if err != nil {
		return nil, nil, err
	}
	var added []*metadata.Metadata[metadata.RootType]
	for _, r := range next {
		nr, err := c.next(r.Version, r.Bytes)
		if err != nil {
			return nil, nil, err
		}
		added = append(added, nr)
	}
	return c.root(), added, nil
}

// AcceptRoots verifies the root versions an approval carries against st's
// chain: versions this side has must be byte-identical, newer ones must
// follow on and verify. It returns the newest root and the versions to
// publish.
func (st *State) AcceptRoots(carried []RootFile) (*metadata.Metadata[metadata.RootType], []*metadata.Metadata[metadata.RootType], error) {
	var fresh []RootFile
	for _, r := range carried {
		mine, ok := st.RootRaw[r.Version]
		if !ok {
			fresh = append(fresh, r)
			continue
		}
		if string(mine) != string(r.Bytes) {
			return nil, nil, &VerificationError{What: Root, Version: r.Version, Reason: "the approval's root differs from this repository's: it was signed for another root of trust"}
		}
	}
	if len(fresh) == 0 {
		return st.Root, nil, nil
	}
	return UpdateRoots(st.RootRaw[st.Root.Signed.Version], fresh...)
}
