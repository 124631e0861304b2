package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/trust"
)

// ApprovalFile is a parsed approval.tar, every member checked against the
// approval's member list. Nothing in it is trusted until the importer has
// verified targets.json against its own root.
type ApprovalFile struct {
	// Roots are root versions newer than the bundle's base, oldest first:
	// how a root rotation reaches the isolated side.
	Roots     []ApprovalRoot
	Approval  *Approval
	Targets   []byte // signed targets metadata
	CosignPub []byte
	// Attestations is the content of trust.AttestationsTarget when the
	// approval carries it (nil otherwise).
	Attestations []byte
}

// ApprovalRoot is one root version an approval carries.
type ApprovalRoot = trust.RootFile

// OpenApproval reads an approval file, refusing anything but a regular
// file (a FIFO or device on removable media would hang or lie).
func OpenApproval(path string) (*ApprovalFile, error) {
	f, _, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadApproval(f, path)
}

// IsApproval reports whether the tar at r starts with an approval header,
// without reading further.
func IsApproval(r io.Reader) bool {
	h, err := tar.NewReader(r).Next()
	return err == nil && h.Name == ApprovalName
}

// WriteApproval writes an approval.tar to w: a's member list is set from
// the files it carries (targets, cosign.pub, then the root versions).
func WriteApproval(w io.Writer, a *Approval, targets, cosignPub []byte, roots []ApprovalRoot) error {
	return WriteApprovalAttested(w, a, targets, cosignPub, nil, roots)
}

// WriteApprovalAttested writes an approval that also carries the content
// of the target trust.AttestationsTarget (nil: none).
func WriteApprovalAttested(w io.Writer, a *Approval, targets, cosignPub, attestations []byte, roots []ApprovalRoot) error {
	files := []File{{ApprovalTargets, targets}, {ApprovalCosign, cosignPub}}
	if attestations != nil {
		files = append(files, File{ApprovalAttestations, attestations})
	}
	for _, r := range roots {
		files = append(files, File{fmt.Sprintf("%s%d.root.json", approvalRootPfx, r.Version), r.Bytes})
	}
	a.Members = members(files)
	raw, err := jsonIndent(a)
	if err != nil {
		return err
	}
	return writeListed(w, a.Created, ApprovalName, raw, a.Members, files)
}

// ReadApproval parses an approval from r (at most MaxApproval bytes).
func ReadApproval(r io.Reader, file string) (*ApprovalFile, error) {
	l, raw, err := openListedFile(r, file, approvalKind, MaxApproval)
	if err != nil {
		return nil, err
	}
	var a Approval
	if err := l.decode(raw, &a, &a.Format); err != nil {
		return nil, err
	}
	if !hexRE.MatchString(a.Bundle.IndexSHA256) {
		return nil, &FormatError{File: file, Member: ApprovalName, Reason: "bundle.index_sha256 is not 64 hex digits"}
	}
	af := &ApprovalFile{Approval: &a}
	want := []string{ApprovalTargets, ApprovalCosign}
	if len(a.Members) < len(want) || len(a.Members) > len(want)+1+MaxApprovalRoots {
		return nil, &FormatError{File: file, Member: ApprovalName, Reason: fmt.Sprintf("lists %d members: an approval has %s, then at most %d root versions", len(a.Members), strings.Join(want, ", "), MaxApprovalRoots)}
	}
	for i, m := range a.Members {
		if i == len(want) && m.Name == ApprovalAttestations {
			if af.Attestations, err = l.next(m, MaxHeadMember); err != nil {
				return nil, err
			}
			continue
		}
		if i >= len(want) {
			if err := l.nextRoot(m, &af.Roots, "not allowed in an approval (after cosign.pub only attestations.json, then root/N.root.json)"); err != nil {
				return nil, err
			}
			continue
		}
		if m.Name != want[i] {
			return nil, &FormatError{File: file, Member: m.Name, Reason: fmt.Sprintf("member %d must be %s", i+2, want[i])}
		}
		data, err := l.next(m, MaxHeadMember)
		if err != nil {
			return nil, err
		}
		if m.Name == ApprovalTargets {
			af.Targets = data
		} else {
			af.CosignPub = data
		}
	}
	if err := l.end(); err != nil {
		return nil, err
	}
	if af.Targets == nil || af.CosignPub == nil {
		return nil, &FormatError{File: file, Reason: "targets.json or cosign.pub is missing"}
	}
	return af, nil
}

// CosignPub renders root's targets keys as the "cosign.pub" target's
// content (trust.CosignPub).
func CosignPub(root *metadata.Metadata[metadata.RootType]) ([]byte, error) {
	return trust.CosignPub(root)
}

// CosignPubTarget is the name of the target that publishes the cosign keys.
const CosignPubTarget = trust.CosignPubTarget

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
