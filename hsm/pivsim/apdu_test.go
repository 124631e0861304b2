package pivsim

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestParseCommandCases(t *testing.T) {
	for _, tc := range []struct {
		name, apdu string
		data       string
		bad        bool
	}{
		{name: "case 1", apdu: "00 fd 00 00"},
		{name: "case 2, Le=00 as yubico-piv-tool sends", apdu: "00 fd 00 00 00"},
		{name: "case 3", apdu: "00 20 00 80 02 31 32", data: "31 32"},
		{name: "case 4", apdu: "00 a4 04 00 02 a0 00 00", data: "a0 00"},
		{name: "extended case 3", apdu: "00 db 3f ff 00 00 02 aa bb", data: "aa bb"},
		{name: "extended case 4", apdu: "00 db 3f ff 00 00 02 aa bb 00 00", data: "aa bb"},
		{name: "too short", apdu: "00 fd 00", bad: true},
		{name: "Lc longer than the body", apdu: "00 20 00 80 05 31", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseCommand(unhex(t, tc.apdu))
			if tc.bad {
				if err == nil {
					t.Fatalf("parsed %s", tc.apdu)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c.data, unhex(t, tc.data)) {
				t.Errorf("data %x, want %s", c.data, tc.data)
			}
		})
	}
}

// TestTLVLengthsAreDERMinimal: piv-go parses answers with encoding/asn1,
// which refuses non-minimal lengths.
func TestTLVLengthsAreDERMinimal(t *testing.T) {
	for _, n := range []int{0, 1, 0x7f, 0x80, 0xff, 0x100, 0x101, 3063} {
		enc := tlv(0x53, bytes.Repeat([]byte{0xaa}, n))
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(enc, &v)
		if err != nil || len(rest) != 0 || len(v.Bytes) != n {
			t.Errorf("length %d: encoding/asn1 reads %x…: %v (rest %d)", n, enc[:min(len(enc), 5)], err, len(rest))
		}
		items, err := parseTLVs(enc)
		if err != nil || len(items) != 1 || items[0].tag != 0x53 || len(items[0].value) != n {
			t.Errorf("length %d: parseTLVs: %v %v", n, items, err)
		}
	}
	if got := tlv(0x5fc10a, nil); !bytes.Equal(got, unhex(t, "5fc10a00")) {
		t.Errorf("three-byte tag: %x", got)
	}
	if got := tlv(0x7f49, []byte{1}); !bytes.Equal(got, unhex(t, "7f490101")) {
		t.Errorf("two-byte tag: %x", got)
	}
}

func TestParseTLVsAcceptsBER(t *testing.T) {
	// A client may send a non-minimal length (82 00 02); the card accepts it.
	items, err := parseTLVs(unhex(t, "5c 03 5f c1 0a 53 82 00 02 aa bb"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := findTLV(items, 0x53); !bytes.Equal(v, unhex(t, "aabb")) {
		t.Errorf("53 = %x", v)
	}
	for _, bad := range []string{"53 05 aa", "53 80", "5f", "53 84 00 00 00 01 aa"} {
		if _, err := parseTLVs(unhex(t, bad)); err == nil {
			t.Errorf("parsed %s", bad)
		}
	}
}

// echo answers every command with its own data, so framing is testable alone.
func echo(c command) response { return success(c.data) }

func TestFramerChainsCommands(t *testing.T) {
	var f framer
	piece := func(cla byte, data []byte) []byte {
		return append([]byte{cla, insPutData, 0x3f, 0xff, byte(len(data))}, data...)
	}
	a, b := bytes.Repeat([]byte{1}, 255), bytes.Repeat([]byte{2}, 10)
	if got := f.exchange(piece(claChain, a), echo); !bytes.Equal(got, unhex(t, "9000")) {
		t.Fatalf("first piece: %x", got)
	}
	// The 265 reassembled bytes come back in two pieces: 256 + 61 09, then
	// 9 + 90 00.
	got := f.exchange(piece(0x00, b), echo)
	if len(got) != 258 || got[256] != 0x61 || got[257] != 9 {
		t.Fatalf("first answer piece: %d bytes ending % x", len(got), got[len(got)-2:])
	}
	rest := f.exchange(unhex(t, "00 c0 00 00 00"), echo)
	if len(rest) != 11 || !bytes.Equal(rest[9:], unhex(t, "9000")) {
		t.Fatalf("GET RESPONSE: % x", rest)
	}
	if whole := append(got[:256], rest[:9]...); !bytes.Equal(whole, append(a, b...)) {
		t.Errorf("reassembled data differs: % x", whole)
	}

	// Another command interrupts a chain: the chain is dropped.
	f.exchange(piece(claChain, a), echo)
	got = f.exchange([]byte{0x00, insGetVersion, 0, 0, 1, 7}, echo)
	if !bytes.Equal(got, unhex(t, "07 9000")) {
		t.Fatalf("interrupting command: % x", got)
	}
}

func TestFramerSplitsLongAnswers(t *testing.T) {
	var f framer
	long := bytes.Repeat([]byte{0xab}, 600)
	answer := func(command) response { return success(long) }
	var got []byte
	r := f.exchange(unhex(t, "00 f9 9c 00"), answer)
	for i := 0; ; i++ {
		got = append(got, r[:len(r)-2]...)
		sw1, sw2 := r[len(r)-2], r[len(r)-1]
		if sw1 == 0x90 && sw2 == 0 {
			break
		}
		if sw1 != 0x61 || i > 3 {
			t.Fatalf("piece %d ends % x", i, r[len(r)-2:])
		}
		want := min(600-len(got), 256) & 0xff
		if int(sw2) != want {
			t.Errorf("piece %d: 61 %02x, want 61 %02x", i, sw2, want)
		}
		r = f.exchange(unhex(t, "00 c0 00 00 00"), answer)
	}
	if !bytes.Equal(got, long) {
		t.Errorf("reassembled %d bytes, want 600", len(got))
	}
	if r := f.exchange(unhex(t, "00 c0 00 00 00"), answer); !bytes.Equal(r, unhex(t, "6985")) {
		t.Errorf("GET RESPONSE with nothing pending: % x", r)
	}
}

func TestFramerRefusesOtherClasses(t *testing.T) {
	var f framer
	if r := f.exchange(unhex(t, "80 fd 00 00"), echo); !bytes.Equal(r, unhex(t, "6e00")) {
		t.Errorf("CLA 80: % x", r)
	}
}
