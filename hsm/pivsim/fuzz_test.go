package pivsim

import (
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// fuzzMessages splits fuzz input into vpcd messages: each is one length
// byte then that many bytes (a shorter tail is the last message).
func fuzzMessages(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		n := int(data[0])
		data = data[1:]
		n = min(n, len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

func fuzzInput(t testing.TB, apdus ...string) []byte {
	var b []byte
	for _, a := range apdus {
		m := unhex(t, a)
		b = append(append(b, byte(len(m))), m...)
	}
	return b
}

// FuzzCardAPDUs sends arbitrary vpcd messages (controls and command APDUs)
// to a selected PIV applet with its PIN verified, the state a hostile
// PC/SC client reaches with the default PIN: the card must answer every
// one with a status word and never panic, loop or grow without bound.
func FuzzCardAPDUs(f *testing.F) {
	dir := f.TempDir()
	tmpl := filepath.Join(dir, "template.json")
	c0, err := Open(tmpl, WithSerial(12345678))
	if err != nil {
		f.Fatal(err)
	}
	stateBytes, err := os.ReadFile(tmpl)
	if err != nil {
		f.Fatal(err)
	}
	sel := "00 a4 04 00 05 a0 00 00 03 08"
	pin := "00 20 00 80 08 31 32 33 34 35 36 ff ff"
	for _, seed := range [][]string{
		{"00 fd 00 00"},
		{"00 f8 00 00 00", "00 f7 00 9c"},
		{"00 47 00 9c 05 ac 03 80 01 11"},
		{"00 47 00 9c 08 ac 06 80 01 e0 aa 01 03", "00 f9 9c 00"},
		{"00 cb 3f ff 05 5c 03 5f c1 0a"},
		{"10 db 3f ff 03 5c 03 5f", "00 db 3f ff 05 c1 0a 53 01 00"},
		{"00 87 11 9c 06 7c 04 82 00 81 00"},
		{"00 87 03 9b 04 7c 02 80 00"},
		{"00 24 00 80 10 31 32 33 34 35 36 ff ff 31 32 33 34 35 36 37 ff"},
		{"00 2c 00 80 10 31 32 33 34 35 36 37 38 31 32 33 34 35 36 ff ff"},
		{"00 a4 04 00 08 a0 00 00 05 27 47 11 17", "00 1d 00 00"},
		{"00 c0 00 00 00", "02", "01", "04"},
		{"00 db 3f ff 00 00 02 aa bb 00 00"},
	} {
		f.Add(fuzzInput(f, seed...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "card.json")
		if err := os.WriteFile(path, stateBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := loadState(path)
		if err != nil {
			t.Fatal(err)
		}
		c := &Card{path: path, log: slog.New(slog.DiscardHandler), rand: rand.Reader, notify: func(string, bool) {}, ca: c0.ca, st: st}
		for _, m := range append([][]byte{unhex(t, sel), unhex(t, pin)}, fuzzMessages(data)...) {
			reply, answer := c.handle(m)
			if !answer {
				continue
			}
			if len(m) == 1 {
				continue // the ATR
			}
			if len(reply) < 2 || len(reply) > maxShortResponse+2 {
				t.Fatalf("command %x: answer of %d bytes", m, len(reply))
			}
		}
		if len(c.sess.frame.chain) > maxChained {
			t.Fatalf("a chain of %d bytes was kept", len(c.sess.frame.chain))
		}
	})
}
