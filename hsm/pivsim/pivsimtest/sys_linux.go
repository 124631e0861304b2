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
