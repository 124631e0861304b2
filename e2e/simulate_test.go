//go:build cgo

package e2e

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coldharbor/coldharbor/hsm/pivsim"
	"github.com/coldharbor/coldharbor/hsm/pivsim/pivsimtest"
)

// TestKeysSimulate runs `coldharbor keys simulate` as a rehearsal would and
// uses the card it plugs in from another coldharbor process; then a card
// that is not a YubiKey is named as such.
func TestKeysSimulate(t *testing.T) {
	pivsimtest.StartPCSCD(t)
	dir := t.TempDir()
	env := []string{"HOME=" + dir, "COLDHARBOR_PIN=123456"}
	sim := exec.CommandContext(t.Context(), bin, "keys", "simulate", "--state", dir+"/holder.json", "--reader", "1",
		"--serial", "41414141", "--attestation-ca", dir+"/ca.pem")
	sim.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	out, err := sim.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sim.Stderr = sim.Stdout
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sim.Process.Signal(os.Interrupt)
		sim.Wait()
	})
	plugged := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var all strings.Builder
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "plugged into") {
				plugged <- all.String()
			}
		}
	}()
	select {
	case <-plugged:
	case <-time.After(10 * time.Second):
		t.Fatal("keys simulate did not plug the card in within 10 s")
	}
	// pcscd notices the card within its ~0.4 s poll; keys list retries briefly.
	var list string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if list = must(t, env, "keys", "list"); strings.Contains(list, "41414141") {
			break
		}
	}
	if !strings.Contains(list, "41414141") || !strings.Contains(list, "5.7.4") {
		t.Fatalf("keys list does not show the simulated card:\n%s", list)
	}
	must(t, env, "keys", "generate", "yubikey:serial=41414141")
	must(t, env, "keys", "attest", "yubikey:serial=41414141", "--attestation-ca", dir+"/ca.pem")

	// A card without a PIV application in the other reader.
	stop := plugNotPIV(t, pivsim.ReaderAddr(0))
	defer stop()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := run(t, env, "keys", "pub", "yubikey:serial=99999999")
		if strings.Contains(r.stderr, "not a YubiKey") || time.Now().After(deadline) {
			if !strings.Contains(r.stderr, "not a YubiKey") {
				t.Fatalf("no mention of the foreign card: %s", r.stderr)
			}
			break
		}
	}
}

// plugNotPIV connects a minimal card to vpcd (2-byte big-endian length, then
// the payload; one-byte control messages) that answers every APDU with
// 6A82, "file not found", as a card without a PIV application does.
func plugNotPIV(t *testing.T, addr string) (stop func()) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	atr := []byte{0x3B, 0x80, 0x80, 0x01, 0x01} // T=1
	go func() {
		for {
			var n uint16
			if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
				return
			}
			msg := make([]byte, n)
			if _, err := io.ReadFull(conn, msg); err != nil {
				return
			}
			var reply []byte
			switch {
			case len(msg) == 1 && msg[0] == 0x04:
				reply = atr
			case len(msg) == 1:
				continue // power on/off, reset: no answer
			default:
				reply = []byte{0x6A, 0x82}
			}
			binary.Write(conn, binary.BigEndian, uint16(len(reply)))
			conn.Write(reply)
		}
	}()
	return func() { conn.Close() }
}
