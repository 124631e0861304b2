package pivsim

import (
	"errors"
	"fmt"
)

// Status words (ISO/IEC 7816-4 §5.1.3; SP 800-73-4 Part 2 §3 lists which
// ones each PIV command returns). piv-go maps 6A82/6A88 to ErrNotFound and
// 63Cx/6983 to AuthErr (piv/pcsc.go), so these must be exact.
const (
	swOK                    = 0x9000
	swMoreData              = 0x6100 // | bytes still available, 00 = 256 or more
	swVerifyFail            = 0x63c0 // | retries left (at most 15)
	swMemoryFailure         = 0x6581 // the state file could not be written
	swWrongLength           = 0x6700
	swSecurityNotSatisfied  = 0x6982
	swAuthBlocked           = 0x6983
	swConditionsNotSatisfed = 0x6985
	swIncorrectData         = 0x6a80
	swFuncNotSupported      = 0x6a81
	swNotFound              = 0x6a82
	swNotEnoughMemory       = 0x6a84
	swIncorrectP1P2         = 0x6a86
	swRefDataNotFound       = 0x6a88
	swINSNotSupported       = 0x6d00
	swCLANotSupported       = 0x6e00
)

// ISO/IEC 7816-4 §5.1.1: bit 5 of CLA set means "more of this command
// follows" (command chaining); piv-go and yubico-piv-tool send 255-byte
// pieces with CLA 0x10 for anything longer.
const (
	claChain = 0x10
	// insGetResponse fetches what a 61xx answer left behind (ISO/IEC 7816-4
	// §7.6.1). Neither pcscd nor vpcd does this for the card: answers over 256 bytes
	// are split by the card itself (docs/design.md, section 8).
	insGetResponse = 0xc0
	// maxShortResponse is the most a short APDU answer may carry (Le=00 means
	// 256); yubico-piv-tool's buffer fails with SCARD_E_INSUFFICIENT_BUFFER
	// beyond it.
	maxShortResponse = 256
	// maxChained bounds a reassembled command: the largest object a YubiKey
	// 5 stores is 3,063 bytes (ykpiv.h CB_OBJ_MAX) plus its TLV headers; an
	// RSA-4096 import would be bigger, and is not supported.
	maxChained = 4096
)

// command is one parsed command APDU (ISO/IEC 7816-4 §5.1).
type command struct {
	cla, ins, p1, p2 byte
	data             []byte
}

// parseCommand reads the four APDU cases, short and extended. Le is
// ignored: answers are always split at 256 bytes, which is what both
// piv-go (no Le) and yubico-piv-tool (Le=00) ask for.
func parseCommand(b []byte) (command, error) {
	if len(b) < 4 {
		return command{}, fmt.Errorf("command of %d bytes: shorter than a header", len(b))
	}
	c := command{cla: b[0], ins: b[1], p1: b[2], p2: b[3]}
	body := b[4:]
	switch {
	case len(body) <= 1: // case 1, or case 2 (Le only)
		return c, nil
	case body[0] != 0: // short Lc
		lc := int(body[0])
		switch len(body) - 1 {
		case lc, lc + 1: // case 3, case 4
			c.data = body[1 : 1+lc]
			return c, nil
		}
		return command{}, fmt.Errorf("Lc %d does not match %d body bytes", lc, len(body)-1)
	case len(body) == 3: // extended case 2: 00 Le Le
		return c, nil
	case len(body) >= 3: // extended Lc: 00 Lc Lc data [Le Le]
		lc := int(body[1])<<8 | int(body[2])
		switch len(body) - 3 {
		case lc, lc + 2:
			c.data = body[3 : 3+lc]
			return c, nil
		}
		return command{}, fmt.Errorf("extended Lc %d does not match %d body bytes", lc, len(body)-3)
	}
	return command{}, fmt.Errorf("malformed body of %d bytes", len(body))
}

// response is an answer before framing: data and a status word.
type response struct {
	data []byte
	sw   uint16
}

func status(sw uint16) response    { return response{sw: sw} }
func success(data []byte) response { return response{data: data, sw: swOK} }
func (r response) bytes() []byte {
	return append(append([]byte(nil), r.data...), byte(r.sw>>8), byte(r.sw))
}
func verifyFailed(retries int) response { return status(swVerifyFail | uint16(min(retries, 15))) }

// framer does what a YubiKey's CCID layer does between the reader and the
// applet: reassembles chained commands and hands out long answers in
// 256-byte pieces on GET RESPONSE.
type framer struct {
	chain    []byte  // data of the chained pieces so far
	chainHdr [3]byte // INS P1 P2 of the chain being assembled
	chaining bool
	pending  []byte // answer data not yet fetched with GET RESPONSE
}

func (f *framer) reset() { *f = framer{} }

// exchange answers one command APDU, calling process for every complete
// command that is not a GET RESPONSE.
func (f *framer) exchange(raw []byte, process func(command) response) []byte {
	c, err := parseCommand(raw)
	if err != nil {
		f.reset()
		return status(swWrongLength).bytes()
	}
	if c.cla&^claChain != 0 {
		f.reset()
		return status(swCLANotSupported).bytes()
	}
	if c.ins == insGetResponse && c.cla == 0 {
		if f.pending == nil {
			return status(swConditionsNotSatisfed).bytes()
		}
		return f.next().bytes()
	}
	f.pending = nil // any other command abandons an unread answer

	hdr := [3]byte{c.ins, c.p1, c.p2}
	if f.chaining && hdr != f.chainHdr {
		// A different command interrupts a chain: the card drops the chain.
		f.chain, f.chaining = nil, false
	}
	if c.cla&claChain != 0 {
		if len(f.chain)+len(c.data) > maxChained {
			f.reset()
			return status(swWrongLength).bytes()
		}
		f.chain = append(f.chain, c.data...)
		f.chainHdr, f.chaining = hdr, true
		return status(swOK).bytes()
	}
	if f.chaining {
		if len(f.chain)+len(c.data) > maxChained {
			f.reset()
			return status(swWrongLength).bytes()
		}
		c.data = append(f.chain, c.data...)
		f.chain, f.chaining = nil, false
	}

	r := process(c)
	if r.sw != swOK || len(r.data) <= maxShortResponse {
		return r.bytes()
	}
	f.pending = r.data
	return f.next().bytes()
}

// next hands out the next piece of a long answer: 61xx while more remains
// (xx = what is left, 00 for 256 or more), 9000 with the last piece.
func (f *framer) next() response {
	n := min(len(f.pending), maxShortResponse)
	piece := f.pending[:n]
	f.pending = f.pending[n:]
	if len(f.pending) == 0 {
		f.pending = nil
		return success(piece)
	}
	left := len(f.pending)
	if left >= maxShortResponse {
		left = 0
	}
	return response{data: piece, sw: swMoreData | uint16(left)}
}

// tlv encodes a BER-TLV with a DER-minimal length: piv-go parses answers
// with encoding/asn1, which refuses any other length form. Tags are given
// as their big-endian bytes packed in an integer (0x7f49, 0x5fc10a).
func tlv(tag uint32, value []byte) []byte {
	var out []byte
	switch {
	case tag > 0xffff:
		out = []byte{byte(tag >> 16), byte(tag >> 8), byte(tag)}
	case tag > 0xff:
		out = []byte{byte(tag >> 8), byte(tag)}
	default:
		out = []byte{byte(tag)}
	}
	n := len(value)
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n <= 0xff:
		out = append(out, 0x81, byte(n))
	default: // values are far below 64 KiB: objects are at most 3,063 bytes
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, value...)
}

// tlvItem is one parsed BER-TLV.
type tlvItem struct {
	tag   uint32
	value []byte
}

var errMalformedTLV = errors.New("malformed TLV")

// parseTLVs reads a sequence of BER-TLVs as clients send them: multi-byte
// tags (5FC10A, 7F49) and any definite length form, minimal or not.
func parseTLVs(b []byte) ([]tlvItem, error) {
	var items []tlvItem
	for len(b) > 0 {
		tag := uint32(b[0])
		b = b[1:]
		if tag&0x1f == 0x1f { // ISO/IEC 7816-4 §5.2.2.1: subsequent tag bytes
			for i := 0; ; i++ {
				if len(b) == 0 || i == 3 {
					return nil, errMalformedTLV
				}
				tag = tag<<8 | uint32(b[0])
				more := b[0]&0x80 != 0
				b = b[1:]
				if !more {
					break
				}
			}
		}
		if len(b) == 0 {
			return nil, errMalformedTLV
		}
		n := int(b[0])
		b = b[1:]
		if n > 0x80 {
			k := n & 0x7f
			if k > 3 || len(b) < k {
				return nil, errMalformedTLV
			}
			n = 0
			for _, x := range b[:k] {
				n = n<<8 | int(x)
			}
			b = b[k:]
		} else if n == 0x80 { // indefinite length has no place in PIV
			return nil, errMalformedTLV
		}
		if len(b) < n {
			return nil, errMalformedTLV
		}
		items = append(items, tlvItem{tag: tag, value: b[:n]})
		b = b[n:]
	}
	return items, nil
}

// findTLV returns the value of the first item with tag, and whether there was one.
func findTLV(items []tlvItem, tag uint32) ([]byte, bool) {
	for _, it := range items {
		if it.tag == tag {
			return it.value, true
		}
	}
	return nil, false
}
