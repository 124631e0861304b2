package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/bundle/approve"
	"github.com/coldharbor/coldharbor/ceremony"
	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

// A 2-of-3 targets approval made in two sittings: the first holder's
// approval is partial (who signed, who may still sign) and import refuses
// it naming the missing count; the second holder adds their signatures
// (targets and every cosign payload) and the approval imports.
func TestPartialApprovalTwoSittings(t *testing.T) {
	ctx := context.Background()
	s, t2, t3, b, plan := twoOfThree(t)
	// Sitting 1: one holder.
	res, err := plan().Sign(ctx, approve.Options{Keys: []*hsm.Key{s.targets}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete || res.State.Missing != 1 || len(res.State.SignedBy) != 1 || len(res.State.MaySign) != 2 {
		t.Fatalf("first sitting: %+v", res.State)
	}
	a := s.path("partial.tar")
	os.WriteFile(a, res.Approval, 0o644)
	af, err := bundle.OpenApproval(a)
	if err != nil || af.Approval.Partial == nil || af.Approval.Partial.Missing != 1 {
		t.Fatalf("the approval does not say it is partial: %v", err)
	}
	if _, err := s.importPair(b, a); !trust.IsVerification(err) || !strings.Contains(err.Error(), "needs 1 more signature") {
		t.Fatalf("import of a partial approval: %v", err)
	}
	// The same holder again: refused.
	if _, err := plan().AddSignatures(ctx, af, approve.Options{Keys: []*hsm.Key{s.targets}}); err == nil || !strings.Contains(err.Error(), "has signed this approval already") {
		t.Fatalf("a holder signing twice: %v", err)
	}
	// Another bundle: refused.
	other, otherRaw := s.makeBundleUnsigned(t, "other", testimages.AppTwo)
	op, err := approve.MakePlan(ctx, bytes.NewReader(otherRaw), other, s.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.AddSignatures(ctx, af, approve.Options{Keys: []*hsm.Key{t2}}); !trust.IsVerification(err) || !strings.Contains(err.Error(), "another bundle") {
		t.Fatalf("adding to an approval of another bundle: %v", err)
	}
	// Sitting 2: the second holder completes it.
	p := plan()
	res, err = p.AddSignatures(ctx, af, approve.Options{Keys: []*hsm.Key{t2}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || len(res.State.SignedBy) != 2 {
		t.Fatalf("second sitting: %+v", res.State)
	}
	if err := p.Record(ctx, s.signer, res); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(a, res.Approval, 0o644)
	af, err = bundle.OpenApproval(a)
	if err != nil || af.Approval.Partial != nil {
		t.Fatalf("the completed approval: %v", err)
	}
	if _, err := plan().AddSignatures(ctx, af, approve.Options{Keys: []*hsm.Key{t3}}); err == nil {
		t.Fatal("a signature added to an approval the repository has moved past")
	}
	ir, err := s.importPair(b, a)
	if err != nil {
		t.Fatalf("import of the completed approval: %v", err)
	}
	if ir.TargetsVersion != 4 {
		t.Fatalf("imported targets v%d", ir.TargetsVersion)
	}
}

// The holders who complete a partial approval sign the first holder's
// targets bytes: those must be exactly what their own repository builds
// from the bundle (expiry aside, and that no later than signing now would
// set), not only the same target files. A first holder who re-signed the
// targets with a ten-year expiry, or with a custom field changed, is
// refused at the second sitting.
func TestPartialApprovalOtherFieldsRefused(t *testing.T) {
	ctx := context.Background()
	s, t2, _, _, plan := twoOfThree(t)
	res, err := plan().Sign(ctx, approve.Options{Keys: []*hsm.Key{s.targets}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*metadata.Metadata[metadata.TargetsType])
		want   string
	}{
		{"expiry ten years on", func(m *metadata.Metadata[metadata.TargetsType]) {
			m.Signed.Expires = m.Signed.Expires.AddDate(10, 0, 0)
		}, "later than signing now would set"},
		{"a target's custom", func(m *metadata.Metadata[metadata.TargetsType]) {
			c := json.RawMessage(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","bundle":"x"}`)
			m.Signed.Targets[testimages.AppOne].Custom = &c
		}, "a field other than the target files differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := s.path("partial.tar")
			os.WriteFile(a, res.Approval, 0o644)
			af, err := bundle.OpenApproval(a)
			if err != nil {
				t.Fatal(err)
			}
			tg, err := metadata.Targets().FromBytes(af.Targets)
			if err != nil {
				t.Fatal(err)
			}
			tc.change(tg)
			tg.Signatures = nil
			if err := trust.Sign(tg, trust.Targets, s.targets.Signer); err != nil {
				t.Fatal(err)
			}
			if af.Targets, err = tg.ToBytes(true); err != nil {
				t.Fatal(err)
			}
			rewriteApproval(t, a, af, af.Roots)
			if af, err = bundle.OpenApproval(a); err != nil {
				t.Fatal(err)
			}
			_, err = plan().AddSignatures(ctx, af, approve.Options{Keys: []*hsm.Key{t2}})
			if !trust.IsVerification(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("second holder signed a changed partial approval: %v", err)
			}
		})
	}
}

// twoOfThree imports one bundle, rotates the targets role to 2-of-3
// (the original key, t2 and t3) and exports an unsigned bundle b whose
// signer plans are made by plan.
func twoOfThree(t *testing.T) (s *setup, t2, t3 *hsm.Key, b string, plan func() *approve.Plan) {
	t.Helper()
	ctx := context.Background()
	s = newSetup(t)
	if _, err := s.importOnce(); err != nil {
		t.Fatal(err)
	}
	t2, t3 = testkeys.New(t, "targets2"), testkeys.New(t, "targets3")
	if _, err := ceremony.Rotate(ctx, ceremony.RotateOptions{Dir: s.signer, AddTargetsKeys: []*hsm.Key{t2, t3}, TargetsThreshold: 2,
		Keys: []*hsm.Key{s.root, s.targets, t2}}); err != nil {
		t.Fatal(err)
	}
	b, raw := s.makeBundleUnsigned(t, "b", testimages.AppOne)
	plan = func() *approve.Plan {
		p, err := approve.MakePlan(ctx, bytes.NewReader(raw), b, s.signer)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return s, t2, t3, b, plan
}
