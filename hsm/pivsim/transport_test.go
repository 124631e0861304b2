package pivsim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// fakeVPCD plays vpcd's side of the protocol on a loopback port, so the
// transport is tested without pcscd.
type fakeVPCD struct {
	t     *testing.T
	ln    net.Listener
	conns chan net.Conn
}

func newFakeVPCD(t *testing.T) *fakeVPCD {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeVPCD{t: t, ln: ln, conns: make(chan net.Conn, 4)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeVPCD) accept() net.Conn {
	f.t.Helper()
	select {
	case c := <-f.conns:
		f.t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		f.t.Fatal("the card did not connect")
		return nil
	}
}

// roundTrip sends one message the way vpcd does (length and payload in two
// writes) and reads the answer.
func roundTrip(t *testing.T, c net.Conn, msg []byte) []byte {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], uint16(len(msg)))
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("reading answer length: %v", err)
	}
	out := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c, out); err != nil {
		t.Fatalf("reading answer: %v", err)
	}
	return out
}

func send1(t *testing.T, c net.Conn, ctl byte) {
	t.Helper()
	if _, err := c.Write([]byte{0, 1, ctl}); err != nil {
		t.Fatal(err)
	}
}

func TestServeSpeaksVPCDAndReconnects(t *testing.T) {
	vpcd := newFakeVPCD(t)
	events := make(chan bool, 8)
	card, _ := newCard(t, WithNotify(func(_ string, plugged bool) { events <- plugged }))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- card.Serve(ctx, vpcd.ln.Addr().String()) }()

	conn := vpcd.accept()
	send1(t, conn, vpcdPowerOn)
	if got := roundTrip(t, conn, []byte{vpcdGetATR}); !bytes.Equal(got, atr) {
		t.Fatalf("ATR % x", got)
	}
	if got := roundTrip(t, conn, apdu(insSelect, 4, 0, aidPIV[:5])); !bytes.HasSuffix(got, []byte{0x90, 0x00}) {
		t.Fatalf("SELECT answered % x", got)
	}
	if got := roundTrip(t, conn, unhex(t, "00fd000000")); !bytes.Equal(got, unhex(t, "0507049000")) {
		t.Fatalf("GET VERSION answered % x", got)
	}
	send1(t, conn, vpcdReset) // no answer: the next message gets the next answer
	if got := roundTrip(t, conn, unhex(t, "00fd000000")); !bytes.Equal(got, unhex(t, "6d00")) {
		t.Fatalf("GET VERSION after reset answered % x, want 6d00 (nothing selected)", got)
	}
	if err := card.Serve(ctx, vpcd.ln.Addr().String()); err == nil {
		t.Error("a second Serve of the same card started")
	}

	// vpcd drops the card (pcscd restarted): it comes back by itself.
	conn.Close()
	conn = vpcd.accept()
	if got := roundTrip(t, conn, []byte{vpcdGetATR}); !bytes.Equal(got, atr) {
		t.Fatalf("ATR after reconnecting: % x", got)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	var got []bool
	for len(events) > 0 {
		got = append(got, <-events)
	}
	if want := []bool{true, false, true, false}; !slices.Equal(got, want) {
		t.Errorf("plug events %v, want %v", got, want)
	}

	card.Close()
	if err := card.Serve(context.Background(), vpcd.ln.Addr().String()); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
}

func TestServeWaitsForVPCD(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens yet

	card, _ := newCard(t)
	served := make(chan error, 1)
	go func() { served <- card.Serve(context.Background(), addr) }()
	time.Sleep(100 * time.Millisecond) // a few refused dials

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer ln.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("the card did not dial again: %v", err)
	}
	defer conn.Close()
	if got := roundTrip(t, conn, []byte{vpcdGetATR}); !bytes.Equal(got, atr) {
		t.Fatalf("ATR % x", got)
	}
	card.Close()
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
}
