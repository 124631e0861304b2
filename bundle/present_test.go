package bundle_test

import (
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/bundle"
)

// TestPresentListRefusals: an index's present blobs are checked as its
// members are: digests, sizes, repository paths, no repeats, none carried.
func TestPresentListRefusals(t *testing.T) {
	w := newWorld(t)
	_, res := w.export(t, w.exportOptions())
	carried := ""
	for _, m := range res.Index.Members {
		if strings.HasPrefix(m.Name, "oci/blobs/") {
			carried = "sha256:" + m.SHA256
		}
	}
	good := bundle.PresentBlob{Digest: "sha256:" + strings.Repeat("a", 64), Size: 10, Repository: "demo/app-one"}
	for name, c := range map[string]struct {
		present []bundle.PresentBlob
		want    string
	}{
		"good":           {[]bundle.PresentBlob{good}, ""},
		"bad digest":     {[]bundle.PresentBlob{{Digest: "sha256:xyz", Size: 1, Repository: "demo/a"}}, "not a sha256 digest"},
		"negative size":  {[]bundle.PresentBlob{{Digest: good.Digest, Size: -1, Repository: "demo/a"}}, "size is out of range"},
		"bad repository": {[]bundle.PresentBlob{{Digest: good.Digest, Size: 1, Repository: "Demo/../x"}}, "is not a repository path"},
		"twice":          {[]bundle.PresentBlob{good, good}, "listed as present twice"},
		"also carried":   {[]bundle.PresentBlob{{Digest: carried, Size: 1, Repository: "demo/a"}}, "also in the bundle"},
	} {
		idx := *res.Index
		idx.Present = c.present
		_, err := bundle.EncodeIndex(&idx)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v; want %q", name, err, c.want)
		}
	}
}
