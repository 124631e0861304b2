package mirror

import (
	"testing"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/trust"
)

// TestMalformedCarriedRootIsARefusal (issue 11, finding 9): a root carried
// in an approval that is not even valid metadata is a refusal (exit 3)
// naming the root version, like a forged one, and touches nothing.
func TestMalformedCarriedRootIsARefusal(t *testing.T) {
	for name, data := range map[string][]byte{
		"not JSON":     []byte("{not json"),
		"not a root":   []byte(`{"signed":{"_type":"targets","version":2},"signatures":[]}`),
		"empty object": []byte(`{}`),
		"huge version": []byte(`{"signed":{"_type":"root","spec_version":"1.0.31","version":9223372036854775807,"expires":"2099-01-01T00:00:00Z","keys":{},"roles":{},"consistent_snapshot":true},"signatures":[]}`),
	} {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t)
			af, err := bundle.OpenApproval(s.approval)
			if err != nil {
				t.Fatal(err)
			}
			rewriteApproval(t, s.approval, af, []bundle.ApprovalRoot{{Version: 2, Bytes: data}})
			before := testfs.TreeHash(t, s.path("isolated"), "lock")
			_, err = s.importOnce()
			if !trust.IsVerification(err) && !bundle.IsFormatError(err) {
				t.Fatalf("import: %v, want a refusal", err)
			}
			if testfs.TreeHash(t, s.path("isolated"), "lock") != before {
				t.Fatal("the repository changed")
			}
			if repos := catalog(t, s); len(repos) > 0 {
				t.Fatalf("pushed: %v", repos)
			}
			t.Log(err)
		})
	}
}
