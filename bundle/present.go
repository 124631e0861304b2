package bundle

import (
	"fmt"
	"sync"
)

// PresentBlob is a blob a differential bundle leaves out (3.8): an image
// already published in the destination holds it, in Repository (a
// repository path under the destination). The importer checks the registry
// has it there, or mounts it from there, before anything is pushed.
type PresentBlob struct {
	Digest     string `json:"digest"`
	Size       int64  `json:"size"`
	Repository string `json:"repository"`
}

// checkPresent checks the blobs an index lists as present: digests and
// sizes in range, valid repository paths, none twice, none also carried.
func checkPresent(present []PresentBlob, listed map[string]bool) error {
	if len(present) > MaxMembers {
		return fmt.Errorf("%d blobs listed as present is over the limit of %d", len(present), MaxMembers)
	}
	seen := map[string]bool{}
	for _, p := range present {
		if !digestRE.MatchString(p.Digest) || p.Size < 0 || p.Size > MaxBlobSize {
			return fmt.Errorf("present blob %q of %d bytes: not a sha256 digest, or its size is out of range", p.Digest, p.Size)
		}
		if err := ValidTargetName(p.Repository + ":x"); err != nil {
			return fmt.Errorf("present blob %s: repository %q is not a repository path", p.Digest, p.Repository)
		}
		if seen[p.Digest] || listed[BlobName(p.Digest)] {
			return fmt.Errorf("blob %s is listed as present twice, or is also in the bundle", p.Digest)
		}
		seen[p.Digest] = true
	}
	return nil
}

// presentIndex maps the digests of an index's present blobs to them.
type presentIndex struct {
	once sync.Once
	m    map[string]PresentBlob
}

// PresentBlob returns the blob with digest that the bundle lists as
// present in the destination (and so does not carry).
func (b *Bundle) PresentBlob(digest string) (PresentBlob, bool) {
	b.present.once.Do(func() {
		b.present.m = map[string]PresentBlob{}
		for _, p := range b.Head.Index.Present {
			b.present.m[p.Digest] = p
		}
	})
	p, ok := b.present.m[digest]
	return p, ok
}
