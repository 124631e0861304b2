package pivsim

import "fmt"

// Data objects (SP 800-73-4 Part 1 §3.1 and Table 3; Yubico's 5FFFxx
// range). GET and PUT DATA name them by tag inside 5C; the value travels
// inside 53.
const (
	tagTagList     = 0x5c
	tagDataObject  = 0x53
	tagDiscovery   = 0x7e     // Part 1 §3.3.2 Discovery Object
	objPrinted     = 0x5fc109 // Printed Information: read needs the PIN (Part 1 Table 3)
	objAttestCert  = 0x5fff01 // Yubico: the f9 attestation certificate
	maxObjectBytes = 3063     // ykpiv.h CB_OBJ_MAX: the largest object a YubiKey 5 stores
)

func objectName(tag uint32) string { return fmt.Sprintf("%06x", tag) }

// storableObject reports whether tag names an object PUT DATA may write:
// the PIV range 5FC1xx and Yubico's 5FFFxx.
func storableObject(tag uint32) bool {
	return tag>>8 == 0x5fc1 || tag>>8 == 0x5fff
}

// objectTag reads the 5C tag list of GET/PUT DATA: exactly one tag.
func objectTag(items []tlvItem) (uint32, bool) {
	v, found := findTLV(items, tagTagList)
	if !found || len(v) == 0 || len(v) > 3 {
		return 0, false
	}
	var tag uint32
	for _, b := range v {
		tag = tag<<8 | uint32(b)
	}
	return tag, true
}

// getData implements GET DATA (SP 800-73-4 Part 2 §3.1.2): 53 around the
// object, 6A82 for one never written.
func (c *Card) getData(cmd command) response {
	if cmd.p1 != 0x3f || cmd.p2 != 0xff {
		return status(swIncorrectP1P2)
	}
	items, err := parseTLVs(cmd.data)
	if err != nil {
		return status(swIncorrectData)
	}
	tag, found := objectTag(items)
	if !found {
		return status(swIncorrectData)
	}
	if tag == tagDiscovery {
		// The PIV AID and the PIN usage policy 40 00: the PIV PIN only, no
		// global PIN (Part 1 §3.3.2).
		return success(tlv(tagDiscovery, append(tlv(0x4f, aidPIV), tlv(0x5f2f, []byte{0x40, 0x00})...)))
	}
	if tag == objPrinted && !c.sess.pinVerified {
		return status(swSecurityNotSatisfied)
	}
	v, found := c.st.Objects[objectName(tag)]
	if !found {
		return status(swNotFound)
	}
	return success(tlv(tagDataObject, v))
}

// putData implements PUT DATA (SP 800-73-4 Part 2 §3.3.1) behind the
// management key. An empty 53 deletes the object, as yubico-piv-tool's
// delete-certificate relies on.
func (c *Card) putData(cmd command) response {
	if cmd.p1 != 0x3f || cmd.p2 != 0xff {
		return status(swIncorrectP1P2)
	}
	if !c.sess.mgmtAuthed {
		return status(swSecurityNotSatisfied)
	}
	items, err := parseTLVs(cmd.data)
	if err != nil {
		return status(swIncorrectData)
	}
	tag, found := objectTag(items)
	if !found || !storableObject(tag) {
		return status(swIncorrectData)
	}
	v, found := findTLV(items, tagDataObject)
	if !found {
		return status(swIncorrectData)
	}
	if len(v) > maxObjectBytes {
		return status(swNotEnoughMemory)
	}
	if len(v) == 0 {
		delete(c.st.Objects, objectName(tag))
	} else {
		c.st.Objects[objectName(tag)] = append([]byte(nil), v...)
	}
	return c.commit(status(swOK))
}
