package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/trust"
)

// --require-attestation refuses targets signed by a key whose attestation
// the approval's ceremony/attestations.json does not record, or records
// but not validly; without the flag the same approval imports, and the
// records are published as a target.
func TestRequireAttestation(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	tid, _ := trust.KeyID(s.targets.Public)
	for _, tc := range []struct {
		name string
		keys map[string]*hsm.Attestation
		want string
	}{
		{"none", nil, "carries no ceremony/attestations.json"},
		{"other key", map[string]*hsm.Attestation{strings.Repeat("ab", 32): {Kind: "yubikey", Serial: 1}}, "attestation is not recorded"},
		{"bogus", map[string]*hsm.Attestation{tid: {Kind: "yubikey", Serial: 1, SlotCertificate: "x", DeviceCertificate: "y"}}, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var att []byte
			if tc.keys != nil {
				att, _ = json.Marshal(trust.Attestations{Format: trust.AttestationsFormat, Keys: tc.keys})
			}
			b, raw := s.makeBundleUnsigned(t, "att-"+strings.ReplaceAll(tc.name, " ", "-"), testimages.AppOne)
			p, err := approve.MakePlan(ctx, bytes.NewReader(raw), b, s.signer)
			if err != nil {
				t.Fatal(err)
			}
			res, err := p.Sign(ctx, approve.Options{Keys: []*hsm.Key{s.targets}, Attestations: att})
			if err != nil {
				t.Fatal(err)
			}
			a := b + ".approval"
			os.WriteFile(a, res.Approval, 0o644)
			o := s.importOptions()
			o.RequireAttestation = true
			if _, err := Import(ctx, b, a, o); !trust.IsVerification(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("import --require-attestation: %v", err)
			}
		})
	}
}
