package pivsimtest

import (
	"net"
	"testing"
)

// A server-side TIME_WAIT on a port (on vpcd's: pcscd stopped while the card
// was connected) must count as in use: vpcd binds without SO_REUSEADDR.
// A free port of our own stands for vpcd's, whose TIME_WAIT would delay
// the next pcscd test by a minute.
func TestVPCDPortsInTimeWait(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	s.Close() // the server side closes first: its port enters TIME_WAIT
	buf := make([]byte, 1)
	c.Read(buf)
	c.Close()
	if portFree(ln.Addr().(*net.TCPAddr).Port) {
		t.Fatal("a port in TIME_WAIT was reported free")
	}
}
