package mirror

import (
	"crypto"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/trust"
)

// --signature-format bundle writes our signature on every signed digest
// (images and platform manifests) as a sigstore bundle referrer, and no
// .sig tag; the read-back and coldharbor verify find it, through the
// referrers API and through the referrers tag. A later legacy import
// keeps the bundle format: never both formats of ours on one digest.
func TestSignatureFormatBundle(t *testing.T) {
	for _, referrers := range []bool{true, false} {
		s := newSetupReferrers(t, referrers)
		s.importFormat = SignatureFormatBundle
		// newSetup's approval is legacy only: bundle refuses it.
		if _, err := s.importOnce(); !trust.IsVerification(err) || !strings.Contains(err.Error(), "no sigstore-bundle signatures") {
			t.Fatalf("bundle import of a legacy-only approval: %v", err)
		}
		s.exportFormat = bundle.SigAuto
		b, a := s.makeBundle(t, "bundled", testimages.AppOne, testimages.AppTwo, testimages.MultiArch)
		res, err := s.importPair(b, a)
		if err != nil {
			t.Fatal(err)
		}
		if res.SignatureFormat.Bundles != 5 { // two apps, the index and its two platforms
			t.Errorf("referrers %v: %d digests signed as bundles", referrers, res.SignatureFormat.Bundles)
		}
		checkOnlyBundles(t, s, b, referrers)
		// A later import asking for legacy keeps the format already there.
		s.importFormat = SignatureFormatLegacy
		b3, a3 := s.makeBundle(t, "again", testimages.AppOne)
		res, err = s.importPair(b3, a3)
		if err != nil {
			t.Fatal(err)
		}
		if res.SignatureFormat.Kept != 1 || res.SignatureFormat.Bundles != 1 {
			t.Errorf("referrers %v: legacy over our bundle: %+v", referrers, res.SignatureFormat)
		}
		checkOnlyBundles(t, s, b3, referrers)
	}
}

func checkOnlyBundles(t *testing.T, s *setup, bundlePath string, referrers bool) {
	t.Helper()
	bf, err := bundle.Open(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	imgs := bf.Images()
	bf.Close()
	keys := targetKeysOf(t, s)
	for _, img := range imgs {
		repo, _ := name.NewRepository(s.dest + "/" + strings.SplitN(img.Name, ":", 2)[0])
		for _, sd := range img.SignedDigests() {
			if _, _, ok := verifyBundles(repo.Digest(sd.Digest), keys, nil); !ok {
				t.Errorf("referrers %v: no verifying sigstore bundle on %s", referrers, sd.Digest)
			}
			tag, _ := SignatureTag(sd.Digest)
			if _, err := remote.Head(repo.Tag(tag)); err == nil {
				t.Errorf("referrers %v: %s has a .sig beside its sigstore bundle", referrers, sd.Digest)
			}
		}
	}
}

func targetKeysOf(t *testing.T, s *setup) map[string]crypto.PublicKey {
	t.Helper()
	st, err := trust.LoadState(t.Context(), s.path("isolated"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := targetsKeys(st.Root)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
