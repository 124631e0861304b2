//go:build !linux || !cgo

package pivsimtest

import "errors"

// cardPresent needs libpcsclite through cgo, as piv-go does.
func cardPresent(string) (bool, error) {
	return false, errors.New("pivsimtest: reading the reader state needs Linux and cgo (libpcsclite)")
}

func probeSerial(string) (uint32, error) {
	return 0, errors.New("pivsimtest: probing a reader needs Linux and cgo (libpcsclite)")
}
