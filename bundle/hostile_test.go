package bundle_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/bundle"
)

// outcome is what the readers must make of a bundle. Each field is ""
// for "accepted", or a regular expression the error message must match.
type outcome struct {
	head string // ReadHead (what the signer runs): a *FormatError
	open string // Open (what the importer runs): a *FormatError
	// blob applies when Open accepts: reading every blob with ReadBlob and
	// BlobReader yields a *DigestError matching it.
	blob string
}

// render is the outcome as the hostile README states it.
func (o outcome) render() (head, open, blob string) {
	f := func(re string) string {
		if re == "" {
			return "accepted"
		}
		return "FormatError `" + re + "`"
	}
	head, open = f(o.head), f(o.open)
	switch {
	case o.open != "":
		blob = "-"
	case o.blob == "":
		blob = "all verify"
	default:
		blob = "DigestError `" + o.blob + "`"
	}
	return head, open, blob
}

// bundleVector is a hostile bundle made from a good one.
type bundleVector struct {
	name string
	doc  string // one line for hostileDir/README.md
	make func(t testing.TB, good []tarEntry) []byte
	want outcome
}

// Expected messages, as regular expressions.
const (
	reSize      = `size \d+, the index says \d+`
	reSHA       = `sha256 [0-9a-f]{64}, the index says [0-9a-f]{64}`
	reNotFirst  = `first member must be coldharbor-bundle\.json`
	reOutOfHead = `out of order: the index lists "[^"]+" here`
	reOutOfScan = `out of order or not in the index: the index lists "[^"]+" here`
	reTampered  = `content has digest sha256:[0-9a-f]{64}, expected sha256:[0-9a-f]{64} \(tampered or corrupt\)`
)

var bundleVectors = []bundleVector{
	{name: "ok", doc: "the good bundle, unchanged (control)",
		make: func(t testing.TB, g []tarEntry) []byte { return writeTar(t, g) }},

	// Names that would escape a directory, listed in the index.
	{name: "traversal-dotdot", doc: `a blob renamed "../x" in the tar and the index`,
		make: renameMember(-1, "../x"),
		want: outcome{head: `member name "\.\./x" is not allowed in a bundle`, open: `member name "\.\./x" is not allowed in a bundle`}},
	{name: "traversal-absolute", doc: `a blob renamed "/abs" in the tar and the index`,
		make: renameMember(-1, "/abs"),
		want: outcome{head: `member name "/abs" is not allowed`, open: `member name "/abs" is not allowed`}},
	{name: "traversal-blob-dir", doc: `a blob renamed "oci/blobs/sha256/../../x" in the tar and the index`,
		make: renameMember(-1, "oci/blobs/sha256/../../x"),
		want: outcome{head: `member name "oci/blobs/sha256/\.\./\.\./x" is not allowed`, open: `member name "oci/blobs/sha256/\.\./\.\./x" is not allowed`}},
	{name: "name-dot-slash", doc: `oci/index.json renamed "./oci/index.json" in the tar and the index`,
		make: func(t testing.TB, g []tarEntry) []byte {
			return renameMember(layoutIndexPos(g), "./oci/index.json")(t, g)
		},
		want: outcome{head: `member name "\./oci/index\.json" is not allowed`, open: `is not allowed`}},
	{name: "name-double-slash", doc: `oci/index.json renamed "oci//index.json" in the tar only`,
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			e[layoutIndexPos(e)].Hdr.Name = "oci//index.json"
			return writeTar(t, e)
		},
		want: outcome{open: `member "oci//index\.json": ` + reOutOfScan}},
	{name: "name-uppercase-hex", doc: "the first blob's name and sha256 in uppercase hex, in the tar and the index",
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			i := blobPos(0)(e)
			e[i].Hdr.Name = "oci/blobs/sha256/" + strings.ToUpper(strings.TrimPrefix(g[i].Hdr.Name, "oci/blobs/sha256/"))
			syncIndex(t, e)
			return writeTar(t, e)
		},
		want: outcome{head: `member name "oci/blobs/sha256/[0-9A-F]{64}" is not allowed`, open: `is not allowed`}},
	{name: "index-uppercase-sha", doc: "the index gives head/targets.json's sha256 in uppercase hex",
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			withIndex(t, e, func(idx *bundle.Index) { idx.Members[0].SHA256 = strings.ToUpper(idx.Members[0].SHA256) })
			return writeTar(t, e)
		},
		want: outcome{head: `sha256 "[0-9A-F]{64}" is not 64 hex digits`, open: `is not 64 hex digits`}},
	{name: "traversal-unlisted", doc: `an extra member "../x" after the last listed one, not in the index`,
		make: func(t testing.TB, g []tarEntry) []byte {
			return writeTar(t, append(clone(g), tarEntry{Hdr: regular("../x", 4), Data: []byte("evil")}))
		},
		want: outcome{open: `member "\.\./x": not listed in the index`}},

	// Members that are not regular files.
	{name: "symlink-head", doc: "head/targets.json replaced by a symbolic link to /etc/passwd",
		make: replaceMember(at(1), tar.Header{Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}),
		want: outcome{head: `is a symbolic link, not a regular file`, open: `is a symbolic link, not a regular file`}},
	{name: "symlink-blob", doc: "the last blob replaced by a symbolic link to /etc/passwd",
		make: replaceMember(at(-1), tar.Header{Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}),
		want: outcome{open: `is a symbolic link, not a regular file`}},
	{name: "hardlink-blob", doc: "the first blob replaced by a hard link to head/targets.json",
		make: replaceMember(blobPos(0), tar.Header{Typeflag: tar.TypeLink, Linkname: bundle.PendingTargets}),
		want: outcome{open: `is a hard link, not a regular file`}},
	{name: "directory-head", doc: `a directory "head/" right after the index`,
		make: insertMember(1, tarEntry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: "head/", Mode: 0o755}}),
		want: outcome{head: `member "head/": is a directory, not a regular file`, open: `is a directory, not a regular file`}},
	{name: "fifo-layout", doc: "oci/oci-layout replaced by a fifo",
		make: replaceMember(layoutPos, tar.Header{Typeflag: tar.TypeFifo}),
		want: outcome{open: `member "oci/oci-layout": is a device or fifo, not a regular file`}},
	{name: "chardev-head", doc: "the last head member replaced by a character device",
		make: replaceMember(lastHeadPos, tar.Header{Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}),
		want: outcome{head: `is a device or fifo, not a regular file`, open: `is a device or fifo, not a regular file`}},

	// Members twice, unlisted, or out of order.
	{name: "duplicate-blob", doc: "the first blob twice in a row",
		make: func(t testing.TB, g []tarEntry) []byte {
			i := blobPos(0)(g)
			return writeTar(t, slices.Insert(clone(g), i+1, g[i]))
		},
		want: outcome{open: `": appears twice`}},
	{name: "duplicate-last", doc: "the last blob twice, at the end",
		make: func(t testing.TB, g []tarEntry) []byte { return writeTar(t, append(clone(g), g[len(g)-1])) },
		want: outcome{open: `not listed in the index`}},
	{name: "duplicate-head", doc: "head/targets.json twice in a row",
		make: func(t testing.TB, g []tarEntry) []byte { return writeTar(t, slices.Insert(clone(g), 2, g[1])) },
		want: outcome{head: reOutOfHead, open: reOutOfHead}},
	{name: "duplicate-index", doc: "the index twice in a row",
		make: func(t testing.TB, g []tarEntry) []byte { return writeTar(t, slices.Insert(clone(g), 1, g[0])) },
		want: outcome{head: `member "coldharbor-bundle.json": ` + reOutOfHead, open: reOutOfHead}},
	{name: "unlisted-blob", doc: "a well-named blob the index does not list, between two listed blobs",
		make: func(t testing.TB, g []tarEntry) []byte {
			x := []byte("not listed")
			return writeTar(t, slices.Insert(clone(g), blobPos(0)(g)+1, tarEntry{Hdr: regular(bundle.BlobName("sha256:"+sha256Hex(x)), int64(len(x))), Data: x}))
		},
		want: outcome{open: reOutOfScan}},
	{name: "unlisted-head", doc: "head/payloads/99.json, not in the index, after head/targets.json",
		make: insertMember(2, tarEntry{Hdr: regular("head/payloads/99.json", 2), Data: []byte("{}")}),
		want: outcome{head: `member "head/payloads/99\.json": ` + reOutOfHead, open: reOutOfHead}},
	{name: "out-of-order-blobs", doc: "the first two blobs swapped in the tar",
		make: func(t testing.TB, g []tarEntry) []byte {
			e, i := clone(g), blobPos(0)(g)
			e[i], e[i+1] = e[i+1], e[i]
			return writeTar(t, e)
		},
		want: outcome{open: reOutOfScan}},
	{name: "out-of-order-head", doc: "the first two head members swapped in the tar",
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			e[1], e[2] = e[2], e[1]
			return writeTar(t, e)
		},
		want: outcome{head: reOutOfHead, open: reOutOfHead}},
	{name: "index-order", doc: "the first blob moved before the head, in the tar and the index",
		make: func(t testing.TB, g []tarEntry) []byte {
			e, i := clone(g), blobPos(0)(g)
			blob := e[i]
			e = slices.Insert(slices.Delete(e, i, i+1), 1, blob)
			syncIndex(t, e)
			return writeTar(t, e)
		},
		want: outcome{head: `is out of order \(head, then oci layout, then blobs\)`, open: `is out of order \(head, then oci layout, then blobs\)`}},
	{name: "index-listed-twice", doc: "the index lists the first blob twice (and the tar holds it twice)",
		make: func(t testing.TB, g []tarEntry) []byte {
			i := blobPos(0)(g)
			e := slices.Insert(clone(g), i+1, g[i])
			syncIndex(t, e)
			return writeTar(t, e)
		},
		want: outcome{head: `" is listed twice`, open: `" is listed twice`}},

	// Sizes and hashes.
	{name: "size-blob", doc: "a byte appended to the first blob; the index unchanged",
		make: editData(blobPos(0), func(b []byte) []byte { return append(b, 'x') }),
		want: outcome{open: reSize}},
	{name: "size-head", doc: "a byte appended to head/targets.json; the index unchanged",
		make: editData(at(1), func(b []byte) []byte { return append(b, ' ') }),
		want: outcome{head: reSize, open: reSize}},
	{name: "sha256-head", doc: "one byte of head/targets.json changed; the index unchanged",
		make: editData(at(1), flipLast),
		want: outcome{head: reSHA, open: reSHA}},
	{name: "sha256-layout", doc: "one byte of oci/index.json changed; the index unchanged",
		make: editData(layoutIndexPos, flipLast),
		want: outcome{open: `member "oci/index\.json": ` + reSHA}},
	{name: "blob-tampered", doc: "one byte of the last blob changed (same size)",
		make: editData(at(-1), flipLast),
		want: outcome{blob: reTampered}},
	{name: "head-member-oversized", doc: "head/targets.json declared (in tar and index) at 5000001 bytes, the data cut short",
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			withIndex(t, e, func(idx *bundle.Index) { idx.Members[0].Size = bundle.MaxHeadMember + 1 })
			e[1].Hdr.Size = bundle.MaxHeadMember + 1
			return writeTar(t, e[:2])
		},
		want: outcome{head: `5000001 bytes is over the limit of 5000000`, open: `5000001 bytes is over the limit of 5000000`}},
	{name: "blob-huge", doc: "the last blob declared (in tar and index) at 32 GiB, the data cut short",
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			withIndex(t, e, func(idx *bundle.Index) { idx.Members[len(idx.Members)-1].Size = 32 << 30 })
			e[len(e)-1].Hdr.Size = 32 << 30
			e[len(e)-1].Hdr.Format = tar.FormatPAX // ustar cannot hold 32 GiB
			return writeTar(t, e)
		},
		want: outcome{open: `truncated: 34359738368 bytes declared, the file ends \d+ bytes in`}},

	// The index itself.
	{name: "index-not-first", doc: "the index is the second member",
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			e[0], e[1] = e[1], e[0]
			return writeTar(t, e)
		},
		want: outcome{head: reNotFirst, open: reNotFirst}},
	{name: "index-oversized", doc: "the index declared at MaxIndexSize+1 bytes (header only)",
		make: func(t testing.TB, g []tarEntry) []byte {
			return writeTar(t, []tarEntry{{Hdr: regular(bundle.IndexName, bundle.MaxIndexSize+1)}})
		},
		want: outcome{head: `8388609 bytes is over the limit of 8388608`, open: `8388609 bytes is over the limit of 8388608`}},
	{name: "index-unknown-field", doc: `the index has an extra field "extra"`,
		make: editData(at(0), func(b []byte) []byte { return append([]byte(`{"extra": true,`), b[1:]...) }),
		want: outcome{head: `unknown field "extra"`, open: `unknown field "extra"`}},
	{name: "index-wrong-format", doc: `the index says format "coldharbor.bundle.v2"`,
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			withIndex(t, e, func(idx *bundle.Index) { idx.Format = "coldharbor.bundle.v2" })
			return writeTar(t, e)
		},
		want: outcome{head: `format "coldharbor\.bundle\.v2", this coldharbor reads "coldharbor\.bundle\.v1"`, open: `format "coldharbor\.bundle\.v2"`}},
	{name: "index-trailing-data", doc: "a second JSON document after the index",
		make: editData(at(0), func(b []byte) []byte { return append(b, "\n{}"...) }),
		want: outcome{head: `trailing data after (the )?JSON document`, open: `trailing data after (the )?JSON document`}},
	{name: "index-trailing-brace", doc: `a "}" after the index object`,
		make: editData(at(0), func(b []byte) []byte { return append(b, '}') }),
		want: outcome{head: `trailing data after (the )?JSON document`, open: `trailing data`}},
	{name: "index-trailing-bracket", doc: `a "]" after the index object`,
		make: editData(at(0), func(b []byte) []byte { return append(b, "\n]"...) }),
		want: outcome{head: `trailing data after (the )?JSON document`, open: `trailing data`}},
	{name: "index-not-json", doc: "the index is not JSON",
		make: editData(at(0), func([]byte) []byte { return []byte("format = v1\n") }),
		want: outcome{head: `not valid JSON for coldharbor\.bundle\.v1`, open: `not valid JSON`}},
	{name: "index-nothing", doc: "the index lists no images and no removals",
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			withIndex(t, e, func(idx *bundle.Index) { idx.Images = nil })
			return writeTar(t, e)
		},
		want: outcome{head: `no images and no removals, yet blob .*: a renewal bundle carries no blobs`, open: `a renewal bundle carries no blobs`}},
	{name: "index-bad-name", doc: `an image named "../../etc:1"`,
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			withIndex(t, e, func(idx *bundle.Index) { idx.Images[0].Name = "../../etc:1" })
			return writeTar(t, e)
		},
		want: outcome{head: `invalid image name "\.\./\.\./etc:1"`, open: `invalid image name`}},
	{name: "index-bad-destination", doc: `the index names destination "https://evil.example"`,
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			withIndex(t, e, func(idx *bundle.Index) { idx.Destination = "https://evil.example" })
			return writeTar(t, e)
		},
		want: outcome{head: `destination "https://evil\.example": want HOST\[/PREFIX\]`, open: `want HOST\[/PREFIX\]`}},
	{name: "index-base-zero", doc: "the index says base root version 0",
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			withIndex(t, e, func(idx *bundle.Index) { idx.Base.RootVersion = 0 })
			return writeTar(t, e)
		},
		want: outcome{head: `base versions root 0, targets 1 are out of range`, open: `out of range`}},
	{name: "roots-missing", doc: "the root chain removed from the tar and the index (base root v1)",
		make: func(t testing.TB, g []tarEntry) []byte { return removeMember(t, g, "head/root/1.root.json", true) },
		want: outcome{head: `the head holds 0 root version\(s\), base\.root_version is 1`, open: `root version`}},
	{name: "index-blob-hash", doc: "the index gives the first blob a sha256 that is not its name",
		make: func(t testing.TB, g []tarEntry) []byte {
			e := clone(g)
			withIndex(t, e, func(idx *bundle.Index) {
				for i, m := range idx.Members {
					if strings.HasPrefix(m.Name, "oci/blobs/") {
						idx.Members[i].SHA256 = strings.Repeat("0", 64)
						return
					}
				}
			})
			return writeTar(t, e)
		},
		want: outcome{head: `sha256 0{64} is not its name`, open: `is not its name`}},

	// Truncation and things that are not bundles.
	{name: "truncated-blob", doc: "the file cut in the middle of the last blob's data",
		make: cutAt(func(l []layoutEntry) int64 { e := l[len(l)-1]; return (e.DataOff + e.DataEnd) / 2 }),
		want: outcome{open: `truncated: \d+ bytes declared, the file ends \d+ bytes in`}},
	{name: "truncated-member-boundary", doc: "the file cut right before the last blob's header",
		make: cutAt(func(l []layoutEntry) int64 { return l[len(l)-1].HeaderOff }),
		want: outcome{open: `missing: the bundle ends early \(truncated\?\)`}},
	{name: "truncated-header", doc: "the file cut in the middle of the last blob's header",
		make: cutAt(func(l []layoutEntry) int64 { return l[len(l)-1].HeaderOff + 100 }),
		want: outcome{open: `not a valid tar \(truncated or damaged\)`}},
	{name: "truncated-head", doc: "the file cut in the middle of head/targets.json",
		make: cutAt(func(l []layoutEntry) int64 { return (l[1].DataOff + l[1].DataEnd) / 2 }),
		want: outcome{head: `member "head/targets\.json": truncated`, open: `truncated`}},
	{name: "trailing-member", doc: `an extra regular member "oci/extra" after the last listed one`,
		make: func(t testing.TB, g []tarEntry) []byte {
			return writeTar(t, append(clone(g), tarEntry{Hdr: regular("oci/extra", 5), Data: []byte("extra")}))
		},
		want: outcome{open: `member "oci/extra": not listed in the index`}},
	{name: "empty-tar", doc: "a tar with no members (two zero blocks)",
		make: func(testing.TB, []tarEntry) []byte { return make([]byte, 1024) },
		want: outcome{head: `empty tar: not a coldharbor bundle`, open: `empty tar: not a coldharbor bundle`}},
	{name: "empty-file", doc: "a file of zero bytes",
		make: func(testing.TB, []tarEntry) []byte { return nil },
		want: outcome{head: `empty tar`, open: `empty tar`}},
	{name: "not-a-tar", doc: "a text file",
		make: func(testing.TB, []tarEntry) []byte {
			return bytes.Repeat([]byte("this is not a tar file, it is a list of images\n"), 30)
		},
		want: outcome{head: `not a valid tar \(truncated or damaged\)`, open: `not a valid tar`}},
	{name: "gzipped", doc: "the good bundle, gzipped",
		make: func(t testing.TB, g []tarEntry) []byte {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(writeTar(t, g))
			zw.Close()
			return buf.Bytes()
		},
		want: outcome{head: `not a valid tar`, open: `not a valid tar`}},

	// Images whose parts are missing.
	{name: "payload-missing", doc: "image 0's payload removed from the tar and the index",
		make: func(t testing.TB, g []tarEntry) []byte { return removeMember(t, g, imagePayload(t, g, 0), true) },
		want: outcome{head: `payload "head/payloads/0\.json" is not a head member`, open: `is not a head member`}},
	{name: "payload-missing-tar", doc: "the last head member (a payload or an index copy) removed from the tar only",
		make: func(t testing.TB, g []tarEntry) []byte { return removeMember(t, g, g[lastHeadPos(g)].Hdr.Name, false) },
		want: outcome{head: `out of order: the index lists "head/(payloads/\d+\.json|indexes/[0-9a-f]{64})" here`, open: `out of order`}},
	{name: "manifest-missing", doc: "image 0's manifest blob removed from the tar and the index",
		make: func(t testing.TB, g []tarEntry) []byte { return removeMember(t, g, imageManifest(t, g, 0), true) },
		want: outcome{head: `its manifest sha256:[0-9a-f]{64} is not in the bundle`, open: `is not in the bundle`}},
	{name: "manifest-missing-tar", doc: "image 0's manifest blob removed from the tar only",
		make: func(t testing.TB, g []tarEntry) []byte { return removeMember(t, g, imageManifest(t, g, 0), false) },
		want: outcome{open: reOutOfScan + `|missing: the bundle ends early`}},
}

// hostileFiles are the vectors committed under hostileDir, made from
// the small bundle of miniBundle: file name → vector name.
var hostileFiles = map[string]string{
	"ok.tar":            "ok",
	"symlink.tar":       "symlink-head",
	"hardlink.tar":      "hardlink-blob",
	"traversal.tar":     "traversal-blob-dir",
	"duplicate.tar":     "duplicate-blob",
	"unlisted.tar":      "trailing-member",
	"truncated.tar":     "truncated-blob",
	"not-first.tar":     "index-not-first",
	"index-too-big.tar": "index-oversized",
	"unknown-field.tar": "index-unknown-field",
	"tampered-blob.tar": "blob-tampered",
	"empty.tar":         "empty-tar",
	"not-a-tar.tar":     "not-a-tar",
}

func vectorByName(name string) bundleVector {
	for _, v := range bundleVectors {
		if v.name == name {
			return v
		}
	}
	panic("no bundle vector " + name)
}

// goodBundle returns the standard test bundle's bytes, exported once per
// test binary (the first caller's world makes it).
func goodBundle(t testing.TB) []byte {
	t.Helper()
	good.Lock()
	defer good.Unlock()
	if good.data == nil {
		w := newWorld(t)
		path, _ := w.export(t, w.exportOptions())
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		good.data = data
	}
	return good.data
}

var good struct {
	sync.Mutex
	data []byte
}

func TestHostileBundles(t *testing.T) {
	entries := readTar(t, goodBundle(t))
	for _, v := range bundleVectors {
		t.Run(v.name, func(t *testing.T) {
			checkBundleOutcome(t, v.make(t, entries), v.want)
		})
	}
}

// checkBundleOutcome runs data through ReadHead and Open (and, when Open
// accepts, reads every blob) and checks each result against want.
func checkBundleOutcome(t *testing.T, data []byte, want outcome) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	err := noPanic(t, "ReadHead", func() error {
		_, err := bundle.ReadHead(bytes.NewReader(data), path)
		return err
	})
	checkErr(t, "ReadHead", err, want.head, bundle.IsFormatError)
	t.Logf("ReadHead: %v", err)
	var b *bundle.Bundle
	err = noPanic(t, "Open", func() (err error) {
		b, err = bundle.Open(path)
		return err
	})
	checkErr(t, "Open", err, want.open, bundle.IsFormatError)
	t.Logf("Open: %v", err)
	if b == nil {
		if want.blob != "" {
			t.Errorf("Open refused the bundle; the vector expects a blob to fail to read")
		}
		return
	}
	defer b.Close()
	err = noPanic(t, "reading blobs", func() error { return readAllBlobs(t, b) })
	checkErr(t, "reading blobs", err, want.blob, isDigestError)
	t.Logf("blobs: %v", err)
}

func isDigestError(err error) bool {
	var de *bundle.DigestError
	return errors.As(err, &de)
}

// checkErr checks err against re: nil when re is "", otherwise an error of
// the kind is checks whose message matches re.
func checkErr(t *testing.T, what string, err error, re string, is func(error) bool) {
	t.Helper()
	switch {
	case re == "" && err != nil:
		t.Errorf("%s: %v, want it accepted", what, err)
	case re == "":
	case err == nil:
		t.Errorf("%s: accepted, want an error matching %q", what, re)
	case !is(err):
		t.Errorf("%s: %T %v, not the expected error type", what, err, err)
	case !regexp.MustCompile(re).MatchString(err.Error()):
		t.Errorf("%s: %v\nwant a message matching %q", what, err, re)
	}
}

// TestHostileFiles checks every committed vector under hostileDir
// against its expected outcome, and that README.md states the same
// outcomes. With -update it rewrites the files and the README.
func TestHostileFiles(t *testing.T) {
	dir := hostileDir
	if *update {
		writeHostileFiles(t, dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		if e.Name() == "README.md" {
			continue
		}
		vname, ok := hostileFiles[e.Name()]
		if !ok {
			t.Errorf("%s/%s has no expected outcome in hostileFiles", hostileDir, e.Name())
			continue
		}
		seen[e.Name()] = true
		t.Run(e.Name(), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if len(data) > 16<<10 {
				t.Errorf("%s is %d bytes: keep hostile vectors small", e.Name(), len(data))
			}
			checkBundleOutcome(t, data, vectorByName(vname).want)
		})
	}
	for f := range hostileFiles {
		if !seen[f] {
			t.Errorf("hostileFiles lists %s, which is not in %s (run with -update)", f, hostileDir)
		}
	}

	// README.md states each file's outcome: the same as the table.
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 7 || !strings.HasSuffix(strings.TrimSpace(cells[1]), ".tar") {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[cells[1]] = cells[3:6]
	}
	for f, vname := range hostileFiles {
		h, o, b := vectorByName(vname).want.render()
		if got, want := rows[f], []string{h, o, b}; !slices.Equal(got, want) {
			t.Errorf("README.md says %s: %q; the test expects %q (run with -update)", f, got, want)
		}
	}
	if len(rows) != len(hostileFiles) {
		t.Errorf("README.md lists %d files, hostileFiles %d", len(rows), len(hostileFiles))
	}
}

func writeHostileFiles(t *testing.T, dir string) {
	old, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	for _, f := range old {
		os.Remove(f)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mini := miniBundle(t)
	var b strings.Builder
	b.WriteString(`# Hostile bundles

Small bundles, hostile but for the control ok.tar, each with the outcome
TestHostileFiles checks (bundle/hostile_test.go, table ` + "`hostileFiles`" + `). They are
made from one tiny, valid bundle (one image with a config and no layers;
ok.tar is that bundle as is) by the rewrites of ` + "`bundleVectors`" + `; the same
rewrites are applied to a real exported bundle in TestHostileBundles.
Regenerate with ` + "`go test ./bundle -run TestHostileFiles -update`" + `.

Columns: what ` + "`bundle.ReadHead`" + ` (the signer: index and head only) and
` + "`bundle.Open`" + ` (the importer: the whole file) return — accepted, or a
` + "`*bundle.FormatError`" + ` whose message matches the regular expression — and,
when Open accepts, what reading every blob (` + "`ReadBlob`, `BlobReader`" + `) gives.

| file | rewrite | ReadHead | Open | blobs |
|---|---|---|---|---|
`)
	files := slices.Sorted(mapKeys(hostileFiles))
	for _, f := range files {
		v := vectorByName(hostileFiles[f])
		if err := os.WriteFile(filepath.Join(dir, f), v.make(t, mini), 0o644); err != nil {
			t.Fatal(err)
		}
		h, o, bl := v.want.render()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f, v.doc, h, o, bl)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// miniBundle is the smallest valid bundle: one image (an OCI manifest with
// a config and no layers), its payload, pending targets and a root v1
// (unsigned: no reader of the bundle parses it).
// Everything is fixed, so -update writes the same bytes every time.
func miniBundle(t testing.TB) []tarEntry {
	t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`)
	cfgDesc := v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(config)), Digest: v1.Hash{Algorithm: "sha256", Hex: sha256Hex(config)}}
	manifest, err := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cfgDesc, Layers: []v1.Descriptor{}})
	if err != nil {
		t.Fatal(err)
	}
	mDigest := "sha256:" + sha256Hex(manifest)
	img := bundle.Image{Name: "demo/mini:1.0", Source: "source.example/demo/mini@" + mDigest, Digest: mDigest,
		MediaType: string(types.OCIManifestSchema1), Size: int64(len(manifest)), Platforms: []string{"linux/amd64"}, Payload: "head/payloads/0.json"}
	idx := &bundle.Index{Format: bundle.BundleFormat, Tool: "test", Created: exportNow, Destination: testDest,
		Base: bundle.Base{RootVersion: 1, TargetsVersion: 1}, Images: []bundle.Image{img}, Removals: []string{}}
	base := metadata.Targets(exportNow)
	pendingMeta, err := bundle.ApplyIndex(base, idx, exportNow, "")
	if err != nil {
		t.Fatal(err)
	}
	pending, err := pendingMeta.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	root, err := metadata.Root(exportNow.AddDate(1, 0, 0)).ToBytes(true) // unsigned: readers do not parse it
	if err != nil {
		t.Fatal(err)
	}
	payload, err := bundle.Payload(testDest, img)
	if err != nil {
		t.Fatal(err)
	}
	layoutIdx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType: types.OCIManifestSchema1, Size: int64(len(manifest)), Digest: v1.Hash{Algorithm: "sha256", Hex: sha256Hex(manifest)},
		Annotations: map[string]string{"org.opencontainers.image.ref.name": img.Name}}}})
	if err != nil {
		t.Fatal(err)
	}
	entries := []tarEntry{{Hdr: regular(bundle.IndexName, 0)}}
	for _, m := range []struct {
		name string
		data []byte
	}{
		{bundle.PendingTargets, pending},
		{"head/root/1.root.json", root},
		{img.Payload, payload},
		{bundle.LayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{bundle.LayoutIndex, layoutIdx},
		{bundle.BlobName(mDigest), manifest},
		{bundle.BlobName(cfgDesc.Digest.String()), config},
	} {
		entries = append(entries, tarEntry{Hdr: regular(m.name, int64(len(m.data))), Data: m.data})
	}
	raw, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	entries[0].Data, entries[0].Hdr.Size = raw, int64(len(raw))
	syncIndex(t, entries)
	return entries
}

// Positions of members in a good bundle's entries.

type pos func(e []tarEntry) int

func at(i int) pos {
	return func(e []tarEntry) int {
		if i < 0 {
			return len(e) + i
		}
		return i
	}
}

// blobPos is the k-th blob member.
func blobPos(k int) pos {
	return func(e []tarEntry) int {
		for i, x := range e {
			if strings.HasPrefix(x.Hdr.Name, "oci/blobs/") {
				if k == 0 {
					return i
				}
				k--
			}
		}
		panic("no such blob")
	}
}

func layoutPos(e []tarEntry) int {
	return slices.IndexFunc(e, func(x tarEntry) bool { return x.Hdr.Name == bundle.LayoutFile })
}
func layoutIndexPos(e []tarEntry) int {
	return slices.IndexFunc(e, func(x tarEntry) bool { return x.Hdr.Name == bundle.LayoutIndex })
}
func lastHeadPos(e []tarEntry) int { return layoutPos(e) - 1 }

func clone(e []tarEntry) []tarEntry { return slices.Clone(e) }

// withIndex decodes the index member, applies f and writes it back.
func withIndex(t testing.TB, e []tarEntry, f func(*bundle.Index)) {
	t.Helper()
	var idx bundle.Index
	if err := json.Unmarshal(e[0].Data, &idx); err != nil {
		t.Fatal(err)
	}
	f(&idx)
	raw, err := json.MarshalIndent(&idx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	e[0].Data, e[0].Hdr.Size = raw, int64(len(raw))
}

// syncIndex makes the index list exactly the members that follow it, with
// their real sizes and hashes: a rewrite the index agrees with.
func syncIndex(t testing.TB, e []tarEntry) {
	t.Helper()
	withIndex(t, e, func(idx *bundle.Index) {
		idx.Members = idx.Members[:0]
		for _, x := range e[1:] {
			idx.Members = append(idx.Members, bundle.Member{Name: x.Hdr.Name, Size: int64(len(x.Data)), SHA256: sha256Hex(x.Data)})
		}
	})
}

func renameMember(p int, name string) func(testing.TB, []tarEntry) []byte {
	return func(t testing.TB, g []tarEntry) []byte {
		e := clone(g)
		i := at(p)(e)
		e[i].Hdr.Name = name
		syncIndex(t, e)
		return writeTar(t, e)
	}
}

// replaceMember turns member p into a special member with p's name.
func replaceMember(p pos, h tar.Header) func(testing.TB, []tarEntry) []byte {
	return func(t testing.TB, g []tarEntry) []byte {
		e := clone(g)
		i := p(e)
		h.Name, h.Mode, h.ModTime = e[i].Hdr.Name, 0o644, exportNow
		e[i] = tarEntry{Hdr: h}
		return writeTar(t, e)
	}
}

func insertMember(i int, x tarEntry) func(testing.TB, []tarEntry) []byte {
	return func(t testing.TB, g []tarEntry) []byte { return writeTar(t, slices.Insert(clone(g), i, x)) }
}

// editData rewrites member p's data (and its tar size), not the index.
func editData(p pos, f func([]byte) []byte) func(testing.TB, []tarEntry) []byte {
	return func(t testing.TB, g []tarEntry) []byte {
		e := clone(g)
		i := p(e)
		e[i].Data = f(slices.Clone(e[i].Data))
		e[i].Hdr.Size = int64(len(e[i].Data))
		return writeTar(t, e)
	}
}

func flipLast(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }

func cutAt(f func([]layoutEntry) int64) func(testing.TB, []tarEntry) []byte {
	return func(t testing.TB, g []tarEntry) []byte {
		data := writeTar(t, g)
		return data[:f(tarLayout(t, data))]
	}
}

// removeMember drops member name from the tar, and from the index too when
// fromIndex is set.
func removeMember(t testing.TB, g []tarEntry, name string, fromIndex bool) []byte {
	t.Helper()
	e := slices.DeleteFunc(clone(g), func(x tarEntry) bool { return x.Hdr.Name == name })
	if len(e) != len(g)-1 {
		t.Fatalf("no member %s", name)
	}
	if fromIndex {
		syncIndex(t, e)
	}
	return writeTar(t, e)
}

func decodeIndex(t testing.TB, g []tarEntry) bundle.Index {
	t.Helper()
	var idx bundle.Index
	if err := json.Unmarshal(g[0].Data, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

func imagePayload(t testing.TB, g []tarEntry, i int) string {
	return decodeIndex(t, g).Images[i].Payload
}

func imageManifest(t testing.TB, g []tarEntry, i int) string {
	return bundle.BlobName(decodeIndex(t, g).Images[i].Digest)
}
