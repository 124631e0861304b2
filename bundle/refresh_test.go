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

// The readers never parse the TUF metadata a refresh bundle carries (trust
// verifies it), so small stand-ins do here.
var (
	refreshSnapshot  = []byte(`{"signed":{"_type":"snapshot","version":2}}`)
	refreshTimestamp = []byte(`{"signed":{"_type":"timestamp","version":2}}`)
)

func goodRefresh(t testing.TB, withSnapshot bool) []tarEntry {
	t.Helper()
	var snap []byte
	if withSnapshot {
		snap = refreshSnapshot
	}
	var buf bytes.Buffer
	if err := bundle.WriteRefresh(&buf, "test", exportNow, snap, refreshTimestamp); err != nil {
		t.Fatal(err)
	}
	return readTar(t, buf.Bytes())
}

// withRefresh decodes the refresh header, applies f and writes it back.
func withRefresh(t testing.TB, e []tarEntry, f func(*bundle.Refresh)) {
	t.Helper()
	var r bundle.Refresh
	if err := json.Unmarshal(e[0].Data, &r); err != nil {
		t.Fatal(err)
	}
	f(&r)
	raw, err := json.MarshalIndent(&r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	e[0].Data, e[0].Hdr.Size = raw, int64(len(raw))
}

// syncRefresh makes the header list exactly the members that follow it.
func syncRefresh(t testing.TB, e []tarEntry) {
	t.Helper()
	withRefresh(t, e, func(r *bundle.Refresh) {
		r.Members = nil
		for _, x := range e[1:] {
			r.Members = append(r.Members, bundle.Member{Name: x.Hdr.Name, Size: int64(len(x.Data)), SHA256: sha256Hex(x.Data)})
		}
	})
}

// TestRefreshRoundTrip: WriteRefresh's output reads back with and without
// a snapshot, in the documented member order, and IsRefresh tells a refresh
// bundle from a bundle and an approval.
func TestRefreshRoundTrip(t *testing.T) {
	for _, withSnap := range []bool{true, false} {
		e := goodRefresh(t, withSnap)
		var names []string
		for _, x := range e {
			names = append(names, x.Hdr.Name)
		}
		want := []string{bundle.RefreshName, "snapshot.json", "timestamp.json"}
		if !withSnap {
			want = slices.Delete(want, 1, 2)
		}
		if !slices.Equal(names, want) {
			t.Errorf("members %v, want %v", names, want)
		}
		rf, err := bundle.ReadRefresh(tarReader(t, e), "refresh.tar")
		if err != nil {
			t.Fatalf("ReadRefresh: %v", err)
		}
		if !bytes.Equal(rf.Timestamp, refreshTimestamp) || (withSnap && !bytes.Equal(rf.Snapshot, refreshSnapshot)) || (!withSnap && rf.Snapshot != nil) {
			t.Errorf("read back timestamp %q snapshot %q", rf.Timestamp, rf.Snapshot)
		}
		if rf.Refresh.Format != bundle.RefreshFormat || rf.Refresh.Tool != "test" || !rf.Refresh.Created.Equal(exportNow) {
			t.Errorf("header %+v", rf.Refresh)
		}
		if !bundle.IsRefresh(tarReader(t, e)) {
			t.Error("IsRefresh(refresh) = false")
		}
	}
	w := newWorld(t)
	path, _ := w.export(t, w.exportOptions())
	_, sr := w.sign(t, path)
	for name, r := range map[string]io.Reader{"bundle": bytes.NewReader(goodBundle(t)), "approval": bytes.NewReader(sr.Approval), "text": strings.NewReader("refresh")} {
		if bundle.IsRefresh(r) {
			t.Errorf("IsRefresh(%s) = true", name)
		}
	}
}

// TestHostileRefresh: refresh bundles ReadRefresh must refuse, each with a
// *FormatError naming what is wrong.
func TestHostileRefresh(t *testing.T) {
	cases := []struct {
		name string
		make func(t testing.TB) io.Reader
		want string
	}{
		{"not-first", func(t testing.TB) io.Reader {
			e := goodRefresh(t, true)
			e[0], e[1] = e[1], e[0]
			return tarReader(t, e)
		}, `member "snapshot\.json": first member must be coldharbor-refresh\.json`},
		{"approval-given", func(t testing.TB) io.Reader {
			return tarReader(t, []tarEntry{{Hdr: regular(bundle.ApprovalName, 2), Data: []byte("{}")}})
		}, `first member must be coldharbor-refresh\.json`},
		{"unknown-field", func(t testing.TB) io.Reader {
			e := goodRefresh(t, false)
			e[0].Data = append([]byte(`{"extra": 1,`), e[0].Data[1:]...)
			e[0].Hdr.Size = int64(len(e[0].Data))
			return tarReader(t, e)
		}, `not valid JSON for coldharbor\.refresh\.v1: json: unknown field "extra"`},
		{"trailing-data", func(t testing.TB) io.Reader {
			e := goodRefresh(t, false)
			e[0].Data = append(slices.Clone(e[0].Data), ']')
			e[0].Hdr.Size = int64(len(e[0].Data))
			return tarReader(t, e)
		}, `trailing data`},
		{"wrong-format", func(t testing.TB) io.Reader {
			e := goodRefresh(t, false)
			withRefresh(t, e, func(r *bundle.Refresh) { r.Format = bundle.BundleFormat })
			return tarReader(t, e)
		}, `format "coldharbor\.bundle\.v1", this coldharbor reads "coldharbor\.refresh\.v1"`},
		{"snapshot-after-timestamp", func(t testing.TB) io.Reader {
			e := goodRefresh(t, true)
			e[1], e[2] = e[2], e[1]
			syncRefresh(t, e)
			return tarReader(t, e)
		}, `member "timestamp\.json": not allowed here \(root/N\.root\.json, then snapshot\.json, then timestamp\.json\)`},
		{"unknown-member-listed", func(t testing.TB) io.Reader {
			e := append(goodRefresh(t, false), tarEntry{Hdr: regular("root.json", 2), Data: []byte("{}")})
			syncRefresh(t, e)
			return tarReader(t, e)
		}, `not allowed here`},
		{"out-of-order", func(t testing.TB) io.Reader {
			e := goodRefresh(t, true)
			e[1], e[2] = e[2], e[1] // the header still lists snapshot.json first
			return tarReader(t, e)
		}, `member "timestamp\.json": out of order: the header lists "snapshot\.json" here`},
		{"extra-member", func(t testing.TB) io.Reader {
			return tarReader(t, append(goodRefresh(t, false), tarEntry{Hdr: regular("extra", 1), Data: []byte("x")}))
		}, `members after the listed ones`},
		{"missing-member", func(t testing.TB) io.Reader { return tarReader(t, goodRefresh(t, true)[:2]) },
			`member "timestamp\.json": missing: the bundle ends early`},
		{"no-timestamp", func(t testing.TB) io.Reader {
			e := goodRefresh(t, true)[:2]
			syncRefresh(t, e)
			return tarReader(t, e)
		}, `member "snapshot\.json": not allowed here`},
		{"size-mismatch", func(t testing.TB) io.Reader {
			e := goodRefresh(t, false)
			withRefresh(t, e, func(r *bundle.Refresh) { r.Members[0].Size++ })
			return tarReader(t, e)
		}, `member "timestamp\.json": size \d+, the index says \d+`},
		{"sha256-mismatch", func(t testing.TB) io.Reader {
			e := goodRefresh(t, false)
			e[1].Data = flipLast(slices.Clone(e[1].Data))
			return tarReader(t, e)
		}, `member "timestamp\.json": ` + reSHA},
		{"symlink-member", func(t testing.TB) io.Reader {
			e := goodRefresh(t, false)
			e[1] = tarEntry{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "timestamp.json", Linkname: "/etc/passwd", Mode: 0o644}}
			return tarReader(t, e)
		}, `member "timestamp\.json": is a symbolic link, not a regular file`},
		{"oversized", func(t testing.TB) io.Reader {
			good := writeTar(t, goodRefresh(t, false))
			return io.MultiReader(bytes.NewReader(good), io.LimitReader(zeros{}, bundle.MaxRefresh+1-int64(len(good))))
		}, `over the 3145728-byte limit of a refresh bundle`},
		{"truncated", func(t testing.TB) io.Reader {
			data := writeTar(t, goodRefresh(t, true))
			l := tarLayout(t, data)
			return bytes.NewReader(data[:(l[2].DataOff+l[2].DataEnd)/2])
		}, `member "timestamp\.json": truncated`},
		{"empty-tar", func(testing.TB) io.Reader { return bytes.NewReader(make([]byte, 1024)) }, `empty tar: not a refresh bundle`},
		{"not-a-tar", func(testing.TB) io.Reader { return strings.NewReader(strings.Repeat("refresh\n", 100)) }, `not a valid tar`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := noPanic(t, "ReadRefresh", func() error {
				_, err := bundle.ReadRefresh(c.make(t), "refresh.tar")
				return err
			})
			t.Logf("ReadRefresh: %v", err)
			checkErr(t, "ReadRefresh", err, c.want, bundle.IsFormatError)
		})
	}
}

// Root versions ride in a refresh bundle before the snapshot, ascending
// without gaps.
func TestRefreshRoots(t *testing.T) {
	for _, tc := range []struct {
		versions []int64
		want     string
	}{{[]int64{2, 3}, ""}, {[]int64{2, 4}, "root versions must follow each other"}} {
		var roots []bundle.ApprovalRoot
		for _, v := range tc.versions {
			roots = append(roots, bundle.ApprovalRoot{Version: v, Bytes: []byte(`{"v":1}`)})
		}
		var buf bytes.Buffer
		if err := bundle.WriteRefreshRoots(&buf, "test", exportNow, roots, refreshSnapshot, refreshTimestamp); err != nil {
			t.Fatal(err)
		}
		rf, err := bundle.ReadRefresh(&buf, "refresh.tar")
		if tc.want == "" {
			if err != nil || len(rf.Roots) != 2 || rf.Roots[1].Version != 3 || rf.Snapshot == nil {
				t.Fatalf("refresh with roots: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("roots %v: %v", tc.versions, err)
		}
	}
}
