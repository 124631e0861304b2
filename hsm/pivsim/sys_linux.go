package pivsim

import (
	"net"
	"syscall"
)

// quickAck sets TCP_QUICKACK (tcp(7)): acknowledge at once rather than
// delay, which vpcd's split writes would otherwise stall on.
func quickAck(conn *net.TCPConn) {
	if conn == nil {
		return
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		// Best effort: without it the card is slow, not wrong.
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
