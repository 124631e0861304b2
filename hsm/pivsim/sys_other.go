//go:build !linux

package pivsim

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// quickAck is Linux-only (TCP_QUICKACK); elsewhere the card is just slower.
func quickAck(*net.TCPConn) {}

func dieWithParent() *syscall.SysProcAttr { return nil }

func tryLock(*os.File) (bool, error) { return false, errors.New("host lock: Linux only") }
