package pivsim

import (
	"errors"
	"net"
	"os"
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

// dieWithParent makes a pcscd the tests start receive SIGTERM if the test
// binary dies first (a timeout, a kill), so none outlives the run.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// tryLock takes an exclusive flock(2) on f without blocking.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
