//go:build linux && cgo

package pivsimtest

// #cgo pkg-config: libpcsclite
// #include <stdlib.h>
// #include <PCSC/winscard.h>
// #include <PCSC/wintypes.h>
import "C"

import (
	"fmt"
	"unsafe"
)

// cardPresent asks pcscd whether it sees a card in reader, without
// connecting to it: piv-go v2.6.0's Open leaks its (exclusive) handle when
// SELECT fails, which it does on a card pcscd has not yet noticed is gone,
// and the reader then stays locked until the process exits.
func cardPresent(reader string) (bool, error) {
	var ctx C.SCARDCONTEXT
	if rc := C.SCardEstablishContext(C.SCARD_SCOPE_SYSTEM, nil, nil, &ctx); rc != C.SCARD_S_SUCCESS {
		return false, fmt.Errorf("SCardEstablishContext: 0x%08x", uint64(rc))
	}
	defer C.SCardReleaseContext(ctx)
	name := C.CString(reader)
	defer C.free(unsafe.Pointer(name))
	var st C.SCARD_READERSTATE
	st.szReader = name
	st.dwCurrentState = C.SCARD_STATE_UNAWARE
	if rc := C.SCardGetStatusChange(ctx, 0, &st, 1); rc != C.SCARD_S_SUCCESS {
		return false, fmt.Errorf("SCardGetStatusChange %q: 0x%08x", reader, uint64(rc))
	}
	return st.dwEventState&C.SCARD_STATE_PRESENT != 0, nil
}

// probeSerial connects to reader in shared mode, selects the PIV applet and
// reads the serial (Yubico's GET SERIAL, INS F8), and always disconnects:
// Plug's readiness check, done without piv-go because a failed piv.Open
// leaks an exclusive handle (see cardPresent) and a card that is still
// powering up fails the first open.
func probeSerial(reader string) (uint32, error) {
	var ctx C.SCARDCONTEXT
	if rc := C.SCardEstablishContext(C.SCARD_SCOPE_SYSTEM, nil, nil, &ctx); rc != C.SCARD_S_SUCCESS {
		return 0, fmt.Errorf("SCardEstablishContext: 0x%08x", uint64(rc))
	}
	defer C.SCardReleaseContext(ctx)
	name := C.CString(reader)
	defer C.free(unsafe.Pointer(name))
	var card C.SCARDHANDLE
	var proto C.DWORD
	if rc := C.SCardConnect(ctx, name, C.SCARD_SHARE_SHARED, C.SCARD_PROTOCOL_T1, &card, &proto); rc != C.SCARD_S_SUCCESS {
		return 0, fmt.Errorf("SCardConnect %q: 0x%08x", reader, uint64(rc))
	}
	defer C.SCardDisconnect(card, C.SCARD_LEAVE_CARD)
	transmit := func(apdu []byte) ([]byte, error) {
		in := C.CBytes(apdu)
		defer C.free(in)
		out := make([]byte, 258)
		n := C.DWORD(len(out))
		if rc := C.SCardTransmit(card, C.SCARD_PCI_T1, (*C.BYTE)(in), C.DWORD(len(apdu)), nil, (*C.BYTE)(unsafe.Pointer(&out[0])), &n); rc != C.SCARD_S_SUCCESS {
			return nil, fmt.Errorf("SCardTransmit: 0x%08x", uint64(rc))
		}
		out = out[:n]
		if len(out) < 2 || out[len(out)-2] != 0x90 || out[len(out)-1] != 0x00 {
			return nil, fmt.Errorf("card answered % x", out)
		}
		return out[:len(out)-2], nil
	}
	// SELECT the PIV application (SP 800-73-4 part 2, 3.1.1; AID A0 00 00 03 08).
	if _, err := transmit([]byte{0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08}); err != nil {
		return 0, fmt.Errorf("SELECT PIV: %w", err)
	}
	s, err := transmit([]byte{0x00, 0xF8, 0x00, 0x00})
	if err != nil || len(s) != 4 {
		return 0, fmt.Errorf("GET SERIAL: % x %v", s, err)
	}
	return uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3]), nil
}
