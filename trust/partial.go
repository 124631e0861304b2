package trust

import (
	"fmt"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// SignatureState is how far a role's metadata is from its threshold: the
// state of an approval signed in several sittings.
type SignatureState struct {
	Threshold int      `json:"threshold"`
	SignedBy  []string `json:"signed_by"` // key IDs whose signatures verify
	MaySign   []string `json:"may_sign"`  // the role's key IDs that have not signed
	Missing   int      `json:"missing"`   // signatures still needed
}

// Complete reports whether the threshold is met.
func (s *SignatureState) Complete() bool { return s.Missing == 0 }

// CheckSignatures verifies every signature on m by itself against root's
// keys for role (go-tuf, with a threshold of one for each signer in turn),
// so a bad signature is found at once, not when the last holder signs. A
// signature by a key the role does not have, or two by one key, is refused.
func CheckSignatures[T metadata.Roles](root *metadata.Metadata[metadata.RootType], role string, m *metadata.Metadata[T]) (*SignatureState, error) {
	ids, threshold := RoleKeyIDs(root, role)
	st := &SignatureState{Threshold: threshold, SignedBy: []string{}, MaySign: []string{}}
	for _, s := range m.Signatures {
		if !slices.Contains(ids, s.KeyID) {
			return nil, &VerificationError{What: role, KeyIDs: []string{s.KeyID}, Reason: fmt.Sprintf("signed by a key that is not a %s key of root v%d", role, root.Signed.Version)}
		}
		if slices.Contains(st.SignedBy, s.KeyID) {
			return nil, &VerificationError{What: role, KeyIDs: []string{s.KeyID}, Reason: "two signatures by one key"}
		}
		if err := verifyOne(root, role, s, m); err != nil {
			return nil, &VerificationError{What: role, KeyIDs: []string{s.KeyID}, Reason: "a signature does not verify", Err: err}
		}
		st.SignedBy = append(st.SignedBy, s.KeyID)
	}
	for _, id := range ids {
		if !slices.Contains(st.SignedBy, id) {
			st.MaySign = append(st.MaySign, id)
		}
	}
	st.Missing = max(0, threshold-len(st.SignedBy))
	return st, nil
}

// verifyOne verifies one signature: go-tuf verifies m under a copy of root
// whose role is that one key with a threshold of one.
func verifyOne[T metadata.Roles](root *metadata.Metadata[metadata.RootType], role string, s metadata.Signature, m *metadata.Metadata[T]) error {
	one := *root
	signed := one.Signed
	roles := map[string]*metadata.Role{}
	for k, v := range signed.Roles {
		roles[k] = v
	}
	roles[role] = &metadata.Role{KeyIDs: []string{s.KeyID}, Threshold: 1}
	signed.Roles = roles
	one.Signed = signed
	only := *m
	only.Signatures = []metadata.Signature{s}
	return one.VerifyDelegate(role, &only)
}
