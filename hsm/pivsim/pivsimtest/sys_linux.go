package pivsimtest

import (
	"errors"
	"os"
	"syscall"
)

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

// vpcdPortsFree reports whether vpcd could bind its two TCP ports (port
// and the next) now.
// It binds as vpcd does, without SO_REUSEADDR (Go's listeners set it, so
// net.Listen would say yes): a pcscd stopped while the card was still
// connected leaves those ports in TIME_WAIT for up to a minute, and a
// pcscd started meanwhile lists no reader ("Address already in use").
func vpcdPortsFree(port int) bool { return portFree(port) && portFree(port+1) }

// portFree binds port on every address without SO_REUSEADDR.
func portFree(port int) bool {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrInet4{Port: port}) == nil
}
