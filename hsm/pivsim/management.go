package pivsim

import (
	"encoding/binary"
	"fmt"
)

// Yubico's management applet, only as far as piv-go's FormFactor reads it:
// READ CONFIG (yubikey-manager yubikit/management.py, INS 1D) answers one
// length byte and TLVs of device information.
const (
	insReadConfig = 0x1d
	diSerial      = 0x02
	diFormFactor  = 0x04
	diVersion     = 0x05
)

// managementVersionString is what selecting the management applet answers;
// yubikey-manager finds the firmware version in it.
func managementVersionString() string {
	return fmt.Sprintf("%d.%d.%d", firmware[0], firmware[1], firmware[2])
}

func (c *Card) management(cmd command) response {
	if cmd.ins != insReadConfig {
		return status(swINSNotSupported)
	}
	var info []byte
	info = append(info, tlv(diSerial, binary.BigEndian.AppendUint32(nil, c.st.Serial))...)
	info = append(info, tlv(diFormFactor, []byte{formFactor})...)
	info = append(info, tlv(diVersion, firmware[:])...)
	return success(append([]byte{byte(len(info))}, info...))
}
