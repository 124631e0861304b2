//go:build !linux

package pivsim

import "net"

// quickAck is Linux-only (TCP_QUICKACK); elsewhere the card is just slower.
func quickAck(*net.TCPConn) {}
