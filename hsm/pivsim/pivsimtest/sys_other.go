//go:build !linux

package pivsimtest

import (
	"errors"
	"os"
	"syscall"
)

func dieWithParent() *syscall.SysProcAttr { return nil }

func tryLock(*os.File) (bool, error) { return false, errors.New("host lock: Linux only") }

func vpcdPortsFree(int) bool { return true }
