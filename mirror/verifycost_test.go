package mirror

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/trust"
)

// TestVerifyManyLayerSignatureIsCheap (issue 11, finding 6): a cosign
// signature manifest with thousands of layers is refused quickly, not read
// layer by layer with a linear search for each.
func TestVerifyManyLayerSignatureIsCheap(t *testing.T) {
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ref, err := name.NewTag(s.dest + "/" + testimages.AppOne)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	// One payload blob for the right digest, named by maxSigLayers layers that
	// each carry a signature that does not verify.
	payload := []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, d.Digest))
	l := static.NewLayer(payload, SimpleSigningMediaType)
	if err := remote.WriteLayer(ref.Context(), l); err != nil {
		t.Fatal(err)
	}
	cfg := static.NewLayer([]byte(`{}`), types.OCIConfigJSON)
	if err := remote.WriteLayer(ref.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	ld, _ := l.Digest()
	cd, _ := cfg.Digest()
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: 2, Digest: cd}}
	for i := range maxSigLayers {
		bad := base64.StdEncoding.EncodeToString(fmt.Appendf(make([]byte, 64), "%06d", i)) // distinct, never verifies
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: SimpleSigningMediaType, Size: int64(len(payload)), Digest: ld,
			Annotations: map[string]string{SignatureAnnotation: bad}})
	}
	raw, _ := json.Marshal(m)
	tag, _ := SignatureTag(d.Digest.String())
	if err := remote.Put(ref.Context().Tag(tag), rawManifestT{raw, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = VerifyImages(ctx, Source{Dir: s.path("isolated"), Cache: t.TempDir()}, []string{ref.String()}, VerifyOptions{Registry: s.dest})
	if !trust.IsVerification(err) {
		t.Fatalf("verify: %v, want a refusal", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("verify took %s for a %d-layer signature manifest", d, maxSigLayers)
	}
	t.Logf("refused in %s: %v", time.Since(start), err)
}
