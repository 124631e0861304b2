//go:build linux && cgo

package pivsim

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
