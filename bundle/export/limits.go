package export

import (
	"fmt"
	"strings"
	"time"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/trust"
)

const fewerImages = "export fewer images per bundle (several bundles, signed and imported one after another)"

// A signature entry as targets.json holds it (key ID, hex DER signature,
// indentation) and as an approval lists it (image, digest, payload, key ID,
// base64 signature), with room to spare.
const (
	targetsSigBytes  = 300
	approvalSigBytes = 600
)

// checkLimits refuses a bundle some reader would refuse: the index's member
// count, each head member and the head in all (the signer's reader), and
// the targets the signer would sign and the approval it would write (the
// importer's and every TUF client's limits).
func checkLimits(st *trust.State, idx *bundle.Index, head []bundle.File, now time.Time) error {
	if err := bundle.CheckLimit("members in one bundle", int64(len(idx.Members)), bundle.MaxMembers, fewerImages); err != nil {
		return err
	}
	var total int64
	for _, f := range head {
		if f.Name == bundle.LayoutFile || f.Name == bundle.LayoutIndex {
			continue
		}
		if err := bundle.CheckLimit("bytes of head member "+f.Name, int64(len(f.Data)), bundle.MaxHeadMember, tooManyTargets(st)); err != nil {
			return err
		}
		total += int64(len(f.Data))
	}
	if err := bundle.CheckLimit("bytes of bundle head", total, bundle.MaxHeadTotal, fewerImages); err != nil {
		return err
	}
	targets, approval, err := signedSizes(st, idx, now)
	if err != nil {
		return err
	}
	if err := bundle.CheckLimit("bytes of signed targets metadata (what TUF clients download)", targets, trust.MaxTargetsSize, tooManyTargets(st)); err != nil {
		return err
	}
	return bundle.CheckLimit("bytes of approval", approval, bundle.MaxApproval, fewerImages)
}

func tooManyTargets(st *trust.State) string {
	return fmt.Sprintf("the targets would pass what a TUF client accepts (%d targets published in v%d): remove targets no longer needed, or export fewer images",
		len(st.Targets.Signed.Targets), st.Targets.Signed.Version)
}

// signedSizes estimates the targets metadata the signer will sign for idx
// (every target, this bundle's bound to it, cosign.pub, one signature per
// targets key) and the approval it will write.
func signedSizes(st *trust.State, idx *bundle.Index, now time.Time) (targets, approval int64, err error) {
	next, err := bundle.ApplyIndex(st.Targets, idx, now, strings.Repeat("0", 64))
	if err != nil {
		return 0, 0, err
	}
	pub, err := bundle.CosignPub(st.Root)
	if err != nil {
		return 0, 0, err
	}
	next.Signed.Targets[bundle.CosignPubTarget] = bundle.TargetFile(bundle.CosignPubTarget, pub)
	raw, err := next.ToBytes(true)
	if err != nil {
		return 0, 0, err
	}
	keys, _ := trust.RoleKeyIDs(st.Root, trust.Targets)
	targets = int64(len(raw) + len(keys)*targetsSigBytes)
	signed := 0
	for _, img := range idx.Images {
		signed += len(img.SignedDigests())
	}
	approval = targets + int64(len(pub)) + int64(signed*len(keys)*approvalSigBytes)
	for v, r := range st.RootRaw {
		if v > 1 { // the approval carries the root versions after v1
			approval += int64(len(r))
		}
	}
	return targets, approval, nil
}

// encodeChecked checks every limit a reader (signer, importer, TUF client)
// sets, and the split, before a blob is fetched, and encodes the index.
func encodeChecked(st *trust.State, idx *bundle.Index, head []bundle.File, now time.Time, split int64) ([]byte, error) {
	if err := checkLimits(st, idx, head, now); err != nil {
		return nil, err
	}
	raw, err := bundle.EncodeIndex(idx)
	if err != nil {
		return nil, err
	}
	if err := bundle.CheckLimit("bytes of bundle index", int64(len(raw)), bundle.MaxIndexSize, fewerImages); err != nil {
		return nil, err
	}
	if split > 0 {
		if err := checkSplit(idx, split); err != nil {
			return nil, err
		}
	}
	return raw, nil
}
