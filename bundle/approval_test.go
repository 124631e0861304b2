package bundle_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/bundle"
)

// approvalVector is a hostile approval made from a good one; want is ""
// for accepted, or a regular expression the *FormatError must match.
type approvalVector struct {
	name string
	make func(t testing.TB, good []tarEntry) io.Reader
	want string
}

var approvalVectors = []approvalVector{
	{"ok", func(t testing.TB, g []tarEntry) io.Reader { return tarReader(t, g) }, ""},
	{"not-first", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		e[0], e[1] = e[1], e[0]
		return tarReader(t, e)
	}, `member "targets\.json": first member must be coldharbor-approval\.json`},
	{"bundle-given-as-approval", func(t testing.TB, _ []tarEntry) io.Reader { return bytes.NewReader(goodBundle(t)) },
		`member "coldharbor-bundle\.json": first member must be coldharbor-approval\.json`},
	{"extra-member", func(t testing.TB, g []tarEntry) io.Reader {
		return tarReader(t, append(clone(g), tarEntry{Hdr: regular("extra.txt", 5), Data: []byte("extra")}))
	}, `members after the listed ones`},
	{"extra-member-listed", func(t testing.TB, g []tarEntry) io.Reader {
		e := append(clone(g), tarEntry{Hdr: regular("extra.json", 2), Data: []byte("{}")})
		syncApproval(t, e)
		return tarReader(t, e)
	}, `not allowed in an approval`},
	{"roots-not-following", func(t testing.TB, g []tarEntry) io.Reader {
		e := append(clone(g), tarEntry{Hdr: regular("root/2.root.json", 2), Data: []byte("{}")},
			tarEntry{Hdr: regular("root/4.root.json", 2), Data: []byte("{}")})
		syncApproval(t, e)
		return tarReader(t, e)
	}, `root versions must follow each other`},
	{"member-listed-twice", func(t testing.TB, g []tarEntry) io.Reader {
		e := []tarEntry{g[0], g[1], g[1]}
		syncApproval(t, e)
		return tarReader(t, e)
	}, `member "targets\.json": (listed twice|member 3 must be cosign\.pub)`},
	{"member-out-of-order", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		e[1], e[2] = e[2], e[1] // the list still says targets.json first
		return tarReader(t, e)
	}, `member "cosign\.pub": out of order: the approval lists "targets\.json" here`},
	{"member-missing", func(t testing.TB, g []tarEntry) io.Reader { return tarReader(t, g[:2]) },
		`member "cosign\.pub": missing: the approval ends early`},
	{"member-unlisted", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g[:2])
		syncApproval(t, e)
		return tarReader(t, e)
	}, `lists 1 members: an approval has targets\.json, cosign\.pub`},
	{"size-mismatch", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		withApproval(t, e, func(a *bundle.Approval) { a.Members[0].Size++ })
		return tarReader(t, e)
	}, `member "targets\.json": size \d+, the index says \d+`},
	{"sha256-mismatch", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		e[1].Data = flipLast(slices.Clone(e[1].Data))
		return tarReader(t, e)
	}, `member "targets\.json": ` + reSHA},
	{"member-oversized", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		withApproval(t, e, func(a *bundle.Approval) { a.Members[0].Size = bundle.MaxHeadMember + 1 })
		e[1].Hdr.Size = bundle.MaxHeadMember + 1 // data cut short: refused before reading
		return tarReader(t, e)
	}, `member "targets\.json": 5000001 bytes is over the limit of 5000000`},
	{"oversized", func(t testing.TB, g []tarEntry) io.Reader {
		good := writeTar(t, g)
		return io.MultiReader(bytes.NewReader(good), io.LimitReader(zeros{}, bundle.MaxApproval+1-int64(len(good))))
	}, `over the 16777216-byte limit of an approval`},
	{"unknown-field", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		e[0].Data = append([]byte(`{"extra": 1,`), e[0].Data[1:]...)
		e[0].Hdr.Size = int64(len(e[0].Data))
		return tarReader(t, e)
	}, `not valid JSON for coldharbor\.approval\.v1: json: unknown field "extra"`},
	{"wrong-format", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		withApproval(t, e, func(a *bundle.Approval) { a.Format = "coldharbor.approval.v2" })
		return tarReader(t, e)
	}, `format "coldharbor\.approval\.v2", this coldharbor reads "coldharbor\.approval\.v1"`},
	{"trailing-data", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		e[0].Data = append(slices.Clone(e[0].Data), '}')
		e[0].Hdr.Size = int64(len(e[0].Data))
		return tarReader(t, e)
	}, `trailing data`},
	{"bad-bundle-sha", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		withApproval(t, e, func(a *bundle.Approval) { a.Bundle.IndexSHA256 = strings.ToUpper(a.Bundle.IndexSHA256) })
		return tarReader(t, e)
	}, `bundle\.index_sha256 is not 64 hex digits`},
	{"symlink-member", func(t testing.TB, g []tarEntry) io.Reader {
		e := clone(g)
		e[2] = tarEntry{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: bundle.ApprovalCosign, Linkname: "/etc/passwd", Mode: 0o644}}
		return tarReader(t, e)
	}, `member "cosign\.pub": is a symbolic link, not a regular file`},
	{"truncated-in-targets", func(t testing.TB, g []tarEntry) io.Reader {
		data := writeTar(t, g)
		l := tarLayout(t, data)
		return bytes.NewReader(data[:(l[1].DataOff+l[1].DataEnd)/2])
	}, `member "targets\.json": truncated`},
	{"truncated-in-approval-json", func(t testing.TB, g []tarEntry) io.Reader {
		data := writeTar(t, g)
		l := tarLayout(t, data)
		return bytes.NewReader(data[:(l[0].DataOff+l[0].DataEnd)/2])
	}, `member "coldharbor-approval\.json": .*unexpected EOF`},
	{"truncated-in-header", func(t testing.TB, g []tarEntry) io.Reader {
		data := writeTar(t, g)
		return bytes.NewReader(data[:tarLayout(t, data)[2].HeaderOff+200])
	}, `not a valid tar \(truncated or damaged\)`},
	{"empty-tar", func(testing.TB, []tarEntry) io.Reader { return bytes.NewReader(make([]byte, 1024)) },
		`empty tar: not a coldharbor approval`},
	{"empty-file", func(testing.TB, []tarEntry) io.Reader { return strings.NewReader("") },
		`empty tar: not a coldharbor approval`},
	{"not-a-tar", func(testing.TB, []tarEntry) io.Reader {
		return strings.NewReader(strings.Repeat("approved by me\n", 100))
	}, `not a valid tar`},
}

// TestHostileApprovals runs every approval vector through ReadApproval:
// each is refused with a *FormatError naming what is wrong, and nothing
// panics.
func TestHostileApprovals(t *testing.T) {
	w := newWorld(t)
	path, _ := w.export(t, w.exportOptions())
	_, res := w.sign(t, path)
	good := readTar(t, res.Approval)
	if len(good) != 3 {
		t.Fatalf("the approval has %d members", len(good))
	}
	for _, v := range approvalVectors {
		t.Run(v.name, func(t *testing.T) {
			var af *bundle.ApprovalFile
			err := noPanic(t, "ReadApproval", func() (err error) {
				af, err = bundle.ReadApproval(v.make(t, good), "approval.tar")
				return err
			})
			t.Logf("ReadApproval: %v", err)
			checkErr(t, "ReadApproval", err, v.want, bundle.IsFormatError)
			if v.want == "" && af != nil && (!bytes.Equal(af.Targets, good[1].Data) || !bytes.Equal(af.CosignPub, good[2].Data)) {
				t.Error("ReadApproval returned other bytes than the members hold")
			}
		})
	}
}

func tarReader(t testing.TB, e []tarEntry) io.Reader { return bytes.NewReader(writeTar(t, e)) }

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// withApproval decodes the approval member, applies f and writes it back.
func withApproval(t testing.TB, e []tarEntry, f func(*bundle.Approval)) {
	t.Helper()
	var a bundle.Approval
	if err := json.Unmarshal(e[0].Data, &a); err != nil {
		t.Fatal(err)
	}
	f(&a)
	raw, err := json.MarshalIndent(&a, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	e[0].Data, e[0].Hdr.Size = raw, int64(len(raw))
}

// syncApproval makes the approval list exactly the members that follow it.
func syncApproval(t testing.TB, e []tarEntry) {
	t.Helper()
	withApproval(t, e, func(a *bundle.Approval) {
		a.Members = nil
		for _, x := range e[1:] {
			a.Members = append(a.Members, bundle.Member{Name: x.Hdr.Name, Size: int64(len(x.Data)), SHA256: sha256Hex(x.Data)})
		}
	})
}
