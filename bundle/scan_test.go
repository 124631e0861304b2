package bundle_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/coldharbor/coldharbor/bundle"
)

// TestTruncatedAnywhere cuts the good bundle at every block boundary (and
// just after, and mid-block). ReadHead must refuse every cut inside the
// head and accept every cut after it; Open must refuse every cut before the
// last member's data ends, and accept the whole file. Nothing panics, and
// every refusal is a *FormatError.
func TestTruncatedAnywhere(t *testing.T) {
	data := goodBundle(t)
	l := tarLayout(t, data)
	var headEnd int64
	for _, e := range l {
		if strings.HasPrefix(e.Name, "oci/") {
			break
		}
		headEnd = e.DataEnd
	}
	lastEnd := l[len(l)-1].DataEnd
	path := filepath.Join(t.TempDir(), "cut.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var cuts []int64
	for n := int64(0); n <= int64(len(data)); n += 512 {
		cuts = append(cuts, n, n+1, n+300)
	}
	cuts = append(cuts, headEnd-1, headEnd, lastEnd-1, lastEnd)
	// Descending, so one file can be cut shorter and shorter.
	for i := len(cuts) - 1; i > 0; i-- {
		for j := 0; j < i; j++ {
			if cuts[j] < cuts[j+1] {
				cuts[j], cuts[j+1] = cuts[j+1], cuts[j]
			}
		}
	}
	for _, n := range cuts {
		if n > int64(len(data)) {
			continue
		}
		if err := os.Truncate(path, n); err != nil {
			t.Fatal(err)
		}
		err := noPanic(t, "ReadHead", func() error {
			_, err := bundle.ReadHead(bytes.NewReader(data[:n]), path)
			return err
		})
		switch {
		case n < headEnd && (err == nil || !bundle.IsFormatError(err)):
			t.Errorf("cut at %d (inside the head, which ends at %d): ReadHead: %v, want a format error", n, headEnd, err)
		case n >= headEnd && err != nil:
			t.Errorf("cut at %d (after the head, which ends at %d): ReadHead: %v, want the head", n, headEnd, err)
		}
		err = noPanic(t, "Open", func() error {
			b, err := bundle.Open(path)
			if err == nil {
				b.Close()
			}
			return err
		})
		switch {
		case n < lastEnd && (err == nil || !bundle.IsFormatError(err)):
			t.Errorf("cut at %d (before the last member ends at %d): Open: %v, want a format error", n, lastEnd, err)
		case n == int64(len(data)) && err != nil:
			t.Errorf("the whole file: Open: %v", err)
		}
	}
}

// TestEveryByteIsBound flips one bit at a time across the good bundle
// (every 37th byte, and every byte of the first header). Each change must
// be refused (by Open, or by reading the blobs) or must change the bundle
// ID (an approval is for one ID), unless it falls in the zero padding
// after a member's data, which no tar reader looks at, or in a header byte
// that archive/tar ignores (the checksum field's terminator), leaving every
// header as it was.
func TestEveryByteIsBound(t *testing.T) {
	data := bytes.Clone(goodBundle(t))
	l := tarLayout(t, data)
	orig := readTar(t, data)
	id := sha256Hex(orig[0].Data)
	f, err := os.CreateTemp(t.TempDir(), "flip-*.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	region := func(off int64) string {
		for _, e := range l {
			switch {
			case off < e.HeaderOff:
				return "padding"
			case off < e.DataOff:
				return "header of " + e.Name
			case off < e.DataEnd:
				return "data of " + e.Name
			}
		}
		last := l[len(l)-1].DataEnd
		if rem := last % 512; rem != 0 && off < last+512-rem {
			return "padding"
		}
		return "end of archive"
	}
	var offs []int64
	for off := int64(0); off < int64(len(data)); off += 37 {
		offs = append(offs, off)
	}
	for off := int64(1); off < 512; off++ {
		offs = append(offs, off)
	}
	for _, off := range offs {
		data[off] ^= 0x04
		if _, err := f.WriteAt(data[off:off+1], off); err != nil {
			t.Fatal(err)
		}
		var gotID string
		err := noPanic(t, "Open", func() error {
			b, err := bundle.Open(f.Name())
			if err != nil {
				return err
			}
			defer b.Close()
			gotID = b.Head.IndexSHA256
			return readAllBlobs(t, b)
		})
		if r := region(off); err == nil && gotID == id && r != "padding" && !(strings.HasPrefix(r, "header") && sameHeaders(t, data, orig)) {
			t.Errorf("a changed byte at %d (%s) is accepted and the bundle ID is unchanged", off, r)
		}
		if err != nil && !bundle.IsFormatError(err) && !isDigestError(err) {
			t.Errorf("byte %d: %T %v, want a format or digest error", off, err, err)
		}
		data[off] ^= 0x04
		if _, err := f.WriteAt(data[off:off+1], off); err != nil {
			t.Fatal(err)
		}
	}
}

// sameHeaders reports whether archive/tar reads data's members with the
// same names, types, sizes and link names as orig's.
func sameHeaders(t testing.TB, data []byte, orig []tarEntry) bool {
	got := readTar(t, data)
	if len(got) != len(orig) {
		return false
	}
	for i := range got {
		a, b := got[i].Hdr, orig[i].Hdr
		if a.Name != b.Name || a.Typeflag != b.Typeflag || a.Size != b.Size || a.Linkname != b.Linkname || !bytes.Equal(got[i].Data, orig[i].Data) {
			return false
		}
	}
	return true
}

// TestSparseMember: a blob stored as a PAX (GNU 1.0) sparse member, which
// archive/tar presents as a regular file whose content is the blob. The
// format (docs/bundle-format.md, section 2) says readers refuse sparse
// files. Whatever the reader does, it must never hand out bytes that are
// not the blob: either Open refuses the bundle, or every blob read yields
// exactly the blob or a digest error.
func TestSparseMember(t *testing.T) {
	for _, c := range []struct {
		name string
		hole int
	}{{"no hole", 0}, {"zero tail stored as a hole", 600}} {
		t.Run(c.name, func(t *testing.T) {
			e := clone(readTar(t, goodBundle(t)))
			sp := len(e) - 1 // the sparse member
			if c.hole > 0 {
				// A blob whose last bytes are zero, so a hole can hold them,
				// before the last blob.
				blob := append([]byte("blob with a zero tail"), make([]byte, c.hole)...)
				e = slices.Insert(e, sp, tarEntry{Hdr: regular(bundle.BlobName("sha256:"+sha256Hex(blob)), int64(len(blob))), Data: blob})
				syncIndex(t, e)
			}
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for i, x := range e {
				if i == sp {
					tw.Flush()
					buf.Write(sparseMember(x.Hdr.Name, x.Data, c.hole))
					continue
				}
				h := x.Hdr
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
				tw.Write(x.Data)
			}
			tw.Close()
			// archive/tar reads the member back as a regular file holding
			// exactly the blob.
			back := readTar(t, buf.Bytes())
			if h := back[sp].Hdr; len(back) != len(e) || h.Name != e[sp].Hdr.Name || h.Typeflag != tar.TypeReg || !bytes.Equal(back[sp].Data, e[sp].Data) {
				t.Fatal("the sparse member does not read back as the blob")
			}
			path := filepath.Join(t.TempDir(), "sparse.tar")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			var b *bundle.Bundle
			err := noPanic(t, "Open", func() (err error) { b, err = bundle.Open(path); return err })
			t.Logf("Open: %v", err)
			if err != nil {
				checkErr(t, "Open", err, `.`, bundle.IsFormatError)
				return
			}
			defer b.Close()
			for _, d := range b.Blobs() {
				data, err := b.ReadBlob(d, bundle.MaxBlobSize)
				if err == nil && "sha256:"+sha256Hex(data) != d {
					t.Fatalf("ReadBlob returned bytes with sha256 %s for %s", sha256Hex(data), d)
				}
				if err != nil {
					t.Logf("ReadBlob: %v", err)
					checkErr(t, "ReadBlob", err, `tampered or corrupt`, isDigestError)
				}
			}
		})
	}
}

// TestOpenNonRegular: Open takes a regular file only. A symbolic link (even
// to a good bundle), a directory and a FIFO are refused without being read
// (a FIFO would block a reader forever); a missing file is an I/O error,
// not a format error.
func TestOpenNonRegular(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	if err := os.WriteFile(good, goodBundle(t), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.tar")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.tar")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, dir, fifo} {
		_, err := bundle.Open(p)
		wantFormatError(t, "Open("+filepath.Base(p)+")", err, "not a regular file")
	}
	_, err := bundle.Open(filepath.Join(dir, "absent.tar"))
	if !errors.Is(err, os.ErrNotExist) || bundle.IsFormatError(err) {
		t.Errorf("Open(absent): %v, want a not-exist error", err)
	}
	b, err := bundle.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// TestHeadTotalLimit: the head may hold at most MaxHeadTotal bytes. A
// stream whose index lists 14 payloads of MaxHeadMember bytes (each within
// the member limit, 70 MB together) is refused at the member that crosses
// the limit, before it is read. The stream is made on the fly: no file.
func TestHeadTotalLimit(t *testing.T) {
	const n = 14
	zero := make([]byte, bundle.MaxHeadMember)
	zeroSHA := sha256Hex(zero)
	pending, root := []byte("{}"), []byte("{}")
	idx := bundle.Index{Format: bundle.BundleFormat, Tool: "test", Created: exportNow, Destination: testDest,
		Base: bundle.Base{RootVersion: 1, TargetsVersion: 1}, Images: []bundle.Image{}, Removals: []string{"demo/gone:1.0"},
		Members: []bundle.Member{
			{Name: bundle.PendingTargets, Size: 2, SHA256: sha256Hex(pending)},
			{Name: "head/root/1.root.json", Size: 2, SHA256: sha256Hex(root)},
		}}
	for i := range n {
		idx.Members = append(idx.Members, bundle.Member{Name: fmt.Sprintf("head/payloads/%d.json", i), Size: bundle.MaxHeadMember, SHA256: zeroSHA})
	}
	idx.Members = append(idx.Members,
		bundle.Member{Name: bundle.LayoutFile, Size: 2, SHA256: sha256Hex([]byte("{}"))},
		bundle.Member{Name: bundle.LayoutIndex, Size: 2, SHA256: sha256Hex([]byte("{}"))})
	raw, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		write := func(name string, data []byte) error {
			h := regular(name, int64(len(data)))
			if err := tw.WriteHeader(&h); err != nil {
				return err
			}
			_, err := tw.Write(data)
			return err
		}
		err := write(bundle.IndexName, raw)
		if err == nil {
			err = write(bundle.PendingTargets, pending)
		}
		if err == nil {
			err = write("head/root/1.root.json", root)
		}
		for i := 0; i < n && err == nil; i++ {
			err = write(fmt.Sprintf("head/payloads/%d.json", i), zero)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	_, err = bundle.ReadHead(pr, "stream")
	wantFormatError(t, "ReadHead", err, `member "head/payloads/13.json": the head is over its limit of 67108864 bytes`)
}

// sparseMember encodes content as a tar member in the PAX GNU sparse 1.0
// format: the data holds content[:len(content)-hole], the rest is a hole.
func sparseMember(name string, content []byte, hole int) []byte {
	dataLen := len(content) - hole
	recs := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", fmt.Sprint(len(content)))
	var out []byte
	out = append(out, rawHeader("PaxHeaders/sparse", tar.TypeXHeader, int64(len(recs)))...)
	out = append(out, pad512([]byte(recs))...)
	phys := append(pad512(fmt.Appendf(nil, "1\n0\n%d\n", dataLen)), content[:dataLen]...)
	out = append(out, rawHeader("GNUSparseFile.0/sparse", tar.TypeReg, int64(len(phys)))...)
	return append(out, pad512(phys)...)
}

// rawHeader is a ustar header block written by hand (archive/tar will not
// write PAX sparse records).
func rawHeader(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", exportNow.Unix()))
	b[156] = typ
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad512(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// paxRecord is one "LEN KEY=VALUE\n" record; LEN counts itself.
func paxRecord(k, v string) string {
	for l := len(k) + len(v) + 3; ; {
		s := fmt.Sprintf("%d %s=%s\n", l, k, v)
		if len(s) == l {
			return s
		}
		l = len(s)
	}
}
