//go:build cgo

// Package pivsimtest plugs the software YubiKey (hsm/pivsim) into the real
// stack (pcscd, vpcd, piv-go), which is one per host, for any package's
// tests. It imports testing, so it is a package of its own: the coldharbor
// binary links hsm/pivsim (keys simulate) but never this harness
// (cmd/coldharbor's depcheck test checks that the binary links no testing).
package pivsimtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/coldharbor/coldharbor/hsm/pivsim"
	"github.com/coldharbor/coldharbor/internal/testenv"
)

const (
	// pcscdSocket is where libpcsclite looks for pcscd, unless
	// PCSCLITE_CSOCK_NAME says otherwise (pcsc-lite's default, Debian).
	pcscdSocket = "/run/pcscd/pcscd.comm"
	// vpcdDriver is what Debian's vsmartcard-vpcd installs; its reader
	// configuration (/etc/reader.conf.d/vpcd) is read only when pcscd starts.
	vpcdDriver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
	// hostLockName serialises every test that uses pcscd, across the test
	// binaries `go test ./...` runs in parallel: one pcscd and two readers
	// serve the whole host.
	hostLockName = "coldharbor-pcscd.lock"

	hostLockWait = 3 * time.Minute // another package's test may hold the readers
	startWait    = 5 * time.Second // pcscd up, readers listed
	plugWait     = 5 * time.Second // pcscd polls for cards about every 0.4 s
	pollEvery    = 20 * time.Millisecond
	stopWait     = 5 * time.Second
	// portsWait outlasts TIME_WAIT (60 s on Linux) on vpcd's ports.
	portsWait = 75 * time.Second
)

const installHint = "apt-get install pcscd vsmartcard-vpcd libpcsclite-dev (make deps)"

// StartPCSCD makes pcscd with the vpcd readers available to t, and holds
// them for t alone until t ends: it takes a host-wide lock (other test
// binaries wait for it), then uses the pcscd that is running, or starts
// `pcscd -f` (as root) and stops it when t ends. Call it once per test,
// before Plug. Set PIVSIM_PCSCD_DEBUG=1 to have the pcscd it starts log
// every APDU; its output is shown when t fails.
//
// Without pcscd or vpcd, t is skipped, or fails under CI=true
// (testenv.Need). stop stops a pcscd StartPCSCD started; it is also run
// when t ends.
func StartPCSCD(t testing.TB) (stop func()) {
	t.Helper()
	lockHost(t)
	if pcscdRunning() {
		requireVPCD(t)
		return func() {}
	}

	path, err := exec.LookPath("pcscd")
	if err != nil {
		testenv.Need(t, "pcscd", installHint)
	}
	if _, err := os.Stat(vpcdDriver); err != nil {
		testenv.Need(t, "the vpcd reader driver (vsmartcard-vpcd)", installHint)
	}
	if os.Geteuid() != 0 {
		testenv.Need(t, "root, to start pcscd", "run the tests as root, or start pcscd (with vsmartcard-vpcd) yourself")
	}
	if err := os.MkdirAll(filepath.Dir(pcscdSocket), 0o755); err != nil {
		t.Fatalf("pivsimtest: starting pcscd: %v", err)
	}
	if removeStale() {
		t.Logf("pivsimtest: removed the socket of a pcscd that died without cleaning up")
	}
	waitForVPCDPorts(t)
	args := []string{"-f"}
	if os.Getenv("PIVSIM_PCSCD_DEBUG") != "" {
		args = append(args, "-d", "-a")
	}
	cmd := exec.Command(path, args...)
	out := &testenv.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		t.Fatalf("pivsimtest: starting pcscd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // pcscd answers SIGTERM with a non-zero status
		close(exited)
	}()
	stop = sync.OnceFunc(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopWait):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("pcscd %v output:\n%s", args, out.String())
		}
	})

	deadline := time.Now().Add(startWait)
	for !pcscdRunning() || !readerListed(pivsim.ReaderName(0)) {
		select {
		case <-exited:
			t.Fatalf("pivsimtest: pcscd exited at start:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pivsimtest: pcscd did not list %q within %v:\n%s", pivsim.ReaderName(0), startWait, out.String())
		}
		time.Sleep(pollEvery)
	}
	return stop
}

// Card is a simulated card Plug plugged into a reader.
type Card struct {
	*pivsim.Card
	reader string // the PC/SC name of the reader it is in
}

// Plug serves a card kept in statePath (made if absent, see Open) on vpcd
// reader 0 or 1 and returns once piv-go opens it there and reads its
// serial (over PC/SC, as piv-go would). If the reader still holds a card (one just unplugged, until
// pcscd's next poll), Plug waits for it to go first. The card is unplugged
// when t ends, or earlier with Unplug; plugging the same state file in
// again is a re-insertion. Call StartPCSCD first.
func Plug(t testing.TB, statePath string, reader int, opts ...pivsim.Option) *Card {
	t.Helper()
	if !pcscdRunning() {
		t.Fatalf("pivsimtest.Plug: pcscd is not running: call pivsimtest.StartPCSCD(t) first")
	}
	name := pivsim.ReaderName(reader)
	waitPresent(t, name, false)

	sim, err := pivsim.Open(statePath, opts...)
	if err != nil {
		t.Fatalf("pivsimtest.Plug: %v", err)
	}
	card := &Card{Card: sim, reader: name}
	served := make(chan error, 1)
	go func() { served <- card.Serve(context.Background(), pivsim.ReaderAddr(reader)) }()
	t.Cleanup(func() {
		card.Close()
		if err := <-served; err != nil && !errors.Is(err, pivsim.ErrClosed) {
			t.Errorf("pivsimtest: serving card %d: %v", card.Serial(), err)
		}
	})

	waitPresent(t, name, true)
	// Even once pcscd lists the card, the first connection may race its
	// power-up: retry, bounded.
	deadline := time.Now().Add(plugWait)
	var last error
	for time.Now().Before(deadline) {
		serial, err := openSerial(name)
		if err == nil && serial == card.Serial() {
			return card
		}
		if err == nil {
			err = fmt.Errorf("found card %d, not %d", serial, card.Serial())
		}
		last = err
		time.Sleep(pollEvery)
	}
	t.Fatalf("pivsimtest.Plug: piv-go does not see card %d in %q after %v: %v", card.Serial(), name, plugWait, last)
	return nil
}

// Unplug pulls a card Plug plugged in and returns once pcscd has seen it
// go, so that the next piv.Open on its reader finds no card.
func Unplug(t testing.TB, card *Card) {
	t.Helper()
	card.Close()
	waitPresent(t, card.reader, false)
}

// waitPresent waits until pcscd sees a card in reader, or sees none.
func waitPresent(t testing.TB, reader string, present bool) {
	t.Helper()
	deadline := time.Now().Add(plugWait)
	for {
		got, err := cardPresent(reader)
		if err != nil {
			t.Fatalf("pivsimtest: %v", err)
		}
		if got == present {
			return
		}
		if time.Now().After(deadline) {
			if present {
				t.Fatalf("pivsimtest: pcscd sees no card in %q after %v", reader, plugWait)
			}
			t.Fatalf("pivsimtest: %q still holds a card after %v (another simulator plugged in?)", reader, plugWait)
		}
		time.Sleep(pollEvery)
	}
}

// openSerial checks the card answers in reader (probeSerial, not piv-go:
// see there).
func openSerial(reader string) (uint32, error) { return probeSerial(reader) }

// lockHost takes the host-wide lock for t, released when t ends.
func lockHost(t testing.TB) {
	t.Helper()
	path := filepath.Join(os.TempDir(), hostLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("pivsimtest: lock %s: %v", path, err)
	}
	deadline := time.Now().Add(hostLockWait)
	for {
		got, err := tryLock(f)
		if err != nil {
			f.Close()
			t.Fatalf("pivsimtest: lock %s: %v", path, err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			f.Close()
			t.Fatalf("pivsimtest: another test held pcscd (%s) for over %v", path, hostLockWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the flock
}

// removeStale deletes the socket and pid file of a pcscd that was killed
// (SIGKILL, a test binary's timeout): pcscd refuses to start while its
// socket file exists ("Another pcscd seems to be running"). A pcscd that is
// still alive is left alone.
func removeStale() bool {
	if _, err := os.Stat(pcscdSocket); err != nil {
		return false
	}
	pidFile := filepath.Join(filepath.Dir(pcscdSocket), "pcscd.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
			return false
		}
	}
	os.Remove(pcscdSocket)
	os.Remove(pidFile)
	return true
}

func socketPath() string {
	if p := os.Getenv("PCSCLITE_CSOCK_NAME"); p != "" {
		return p
	}
	return pcscdSocket
}

func pcscdRunning() bool {
	c, err := net.DialTimeout("unix", socketPath(), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func readerListed(name string) bool {
	readers, err := piv.Cards()
	return err == nil && slices.Contains(readers, name)
}

func requireVPCD(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(startWait)
	for !readerListed(pivsim.ReaderName(0)) {
		if time.Now().After(deadline) {
			testenv.Need(t, "vpcd readers in the running pcscd", "install vsmartcard-vpcd, then restart pcscd (it reads /etc/reader.conf.d only at start)")
		}
		time.Sleep(pollEvery)
	}
}

// vpcdPort is vsmartcard-vpcd's TCP port for reader 0; reader 1 is the next.
const vpcdPort = 35963

// waitForVPCDPorts waits until vpcd can bind its ports (see vpcdPortsFree).
func waitForVPCDPorts(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(portsWait)
	for !vpcdPortsFree(vpcdPort) {
		if time.Now().After(deadline) {
			t.Fatalf("pivsimtest: vpcd's ports %d and %d stayed in use for %v", vpcdPort, vpcdPort+1, portsWait)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
