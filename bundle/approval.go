package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
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

// writeApproval writes an approval.tar to w.
func writeApproval(w io.Writer, a *Approval, targets, cosignPub []byte, roots []ApprovalRoot) error {
	type file struct {
		name string
		data []byte
	}
	files := []file{{ApprovalTargets, targets}, {ApprovalCosign, cosignPub}}
	for _, r := range roots {
		files = append(files, file{fmt.Sprintf("%s%d.root.json", approvalRootPfx, r.Version), r.Bytes})
	}
	a.Members = nil
	for _, f := range files {
		a.Members = append(a.Members, member(f.name, f.data))
	}
	raw, err := jsonIndent(a)
	if err != nil {
		return err
	}
	tw := newTarWriter(w, a.Created)
	if err := tw.bytes(ApprovalName, raw); err != nil {
		return err
	}
	for _, f := range files {
		if err := tw.bytes(f.name, f.data); err != nil {
			return err
		}
	}
	return tw.close()
}

// ReadApproval parses an approval from r (at most MaxApproval bytes).
func ReadApproval(r io.Reader, file string) (*ApprovalFile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxApproval+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(data) > MaxApproval {
		return nil, &FormatError{File: file, Reason: fmt.Sprintf("over the %d-byte limit of an approval", MaxApproval)}
	}
	tr := tar.NewReader(bytes.NewReader(data))
	h, err := nextMember(tr, file)
	if err == io.EOF {
		return nil, &FormatError{File: file, Reason: "empty tar: not a coldharbor approval"}
	}
	if err != nil {
		return nil, err
	}
	if h.Name != ApprovalName {
		return nil, &FormatError{File: file, Member: h.Name, Reason: "first member must be " + ApprovalName + " (is this an approval? the bundle goes first)"}
	}
	raw, err := io.ReadAll(io.LimitReader(tr, MaxApproval))
	if err != nil {
		return nil, &FormatError{File: file, Member: h.Name, Reason: err.Error()}
	}
	var a Approval
	if err := decodeStrict(raw, &a); err != nil {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("not valid JSON for %s: %v", ApprovalFormat, err)}
	}
	if a.Format != ApprovalFormat {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("format %q, this coldharbor reads %q", a.Format, ApprovalFormat)}
	}
	if !hexRE.MatchString(a.Bundle.IndexSHA256) {
		return nil, &FormatError{File: file, Member: h.Name, Reason: "bundle.index_sha256 is not 64 hex digits"}
	}
	af := &ApprovalFile{Approval: &a}
	want := []string{ApprovalTargets, ApprovalCosign}
	if len(a.Members) < len(want) || len(a.Members) > len(want)+maxApprovalRoots {
		return nil, &FormatError{File: file, Member: h.Name, Reason: fmt.Sprintf("lists %d members: an approval has %s, then at most %d root versions", len(a.Members), strings.Join(want, ", "), maxApprovalRoots)}
	}
	seen := map[string]bool{}
	var lastRoot int64
	for i, m := range a.Members {
		if i < len(want) && m.Name != want[i] {
			return nil, &FormatError{File: file, Member: m.Name, Reason: fmt.Sprintf("member %d must be %s", i+2, want[i])}
		}
		if i >= len(want) {
			// root/N.root.json, N strictly ascending and contiguous.
			var v int64
			if !strings.HasPrefix(m.Name, approvalRootPfx) || !rootRE.MatchString(m.Name[len(approvalRootPfx):]) {
				return nil, &FormatError{File: file, Member: m.Name, Reason: "not allowed in an approval (after cosign.pub only root/N.root.json)"}
			}
			fmt.Sscanf(m.Name[len(approvalRootPfx):], "%d", &v)
			if lastRoot != 0 && v != lastRoot+1 {
				return nil, &FormatError{File: file, Member: m.Name, Reason: "root versions must follow each other"}
			}
			lastRoot = v
		}
		if seen[m.Name] {
			return nil, &FormatError{File: file, Member: m.Name, Reason: "listed twice"}
		}
		seen[m.Name] = true
		h, err := nextListed(tr, m.Name, file, "approval", "approval")
		if err != nil {
			return nil, err
		}
		data, err := readMember(tr, h, m, MaxHeadMember, file)
		if err != nil {
			return nil, err
		}
		switch m.Name {
		case ApprovalTargets:
			af.Targets = data
		case ApprovalCosign:
			af.CosignPub = data
		default:
			af.Roots = append(af.Roots, ApprovalRoot{Version: lastRoot, Bytes: data})
		}
	}
	if err := noMoreMembers(tr, file); err != nil {
		return nil, err
	}
	if af.Targets == nil || af.CosignPub == nil {
		return nil, &FormatError{File: file, Reason: "targets.json or cosign.pub is missing"}
	}
	return af, nil
}

// CosignPub renders root's targets keys as concatenated PEM public keys, in
// the order root lists them: the file published as the "cosign.pub" target.
// cosign reads the first key of such a file; coldharbor verify reads all.
func CosignPub(root *metadata.Metadata[metadata.RootType]) ([]byte, error) {
	keys, err := trust.RoleKeys(root, trust.Targets)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("root has no targets keys")
	}
	var out []byte
	for _, k := range keys {
		p, err := cryptoutils.MarshalPublicKeyToPEM(k.Public)
		if err != nil {
			return nil, err
		}
		out = append(out, p...)
	}
	return out, nil
}

// CosignPubTarget is the name of the target that publishes the cosign keys.
const CosignPubTarget = "cosign.pub"

func targetFile(name string, data []byte) *metadata.TargetFiles {
	s := sha256.Sum256(data)
	return &metadata.TargetFiles{Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": s[:]}, Path: name}
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
