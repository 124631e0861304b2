package pivsim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// The vpcd protocol (vsmartcard, virtualsmartcard/src/vpcd/vpcd.h): vpcd
// listens inside pcscd, the card connects. Every message either way is a
// 2-byte big-endian length and a payload; a 1-byte payload from vpcd is a
// control, anything longer a command APDU.
const (
	vpcdPowerOff = 0x00
	vpcdPowerOn  = 0x01
	vpcdReset    = 0x02
	vpcdGetATR   = 0x04
	// vpcdBasePort is reader 0's port; reader N listens on vpcdBasePort+N
	// (Debian's /etc/reader.conf.d/vpcd configures two readers).
	vpcdBasePort = 35963
)

// Redial bounds: vpcd may not be up yet (pcscd starting) or may have
// dropped the card (pcscd restarted); retry quickly, then once a second.
const (
	minRedial = 20 * time.Millisecond
	maxRedial = time.Second
)

// ErrClosed is returned by Serve on a card that was closed.
var ErrClosed = errors.New("pivsim: card closed")

// ReaderAddr is the address of vpcd's reader n (0 or 1 with Debian's
// configuration).
func ReaderAddr(reader int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(vpcdBasePort+reader))
}

// ReaderName is the PC/SC name of vpcd's reader n, as piv.Cards lists it.
func ReaderName(reader int) string { return fmt.Sprintf("Virtual PCD 00 %02d", reader) }

// Serve plugs the card into vpcd at addr (see ReaderAddr) and answers
// pcscd until ctx is done or Close is called; if vpcd is not there yet or
// drops the card, Serve dials again, at most a second apart. It returns
// nil when stopped, and an error only if the card is closed or already
// being served.
func (c *Card) Serve(ctx context.Context, addr string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	c.serveMu.Lock()
	switch {
	case c.closed:
		c.serveMu.Unlock()
		return ErrClosed
	case c.stopServe != nil:
		c.serveMu.Unlock()
		return errors.New("pivsim: card is already being served")
	}
	c.stopServe, c.served = cancel, done
	c.serveMu.Unlock()
	defer func() {
		c.serveMu.Lock()
		c.stopServe, c.served = nil, nil
		c.serveMu.Unlock()
		close(done)
	}()

	wait, warned := minRedial, false
	for {
		plugged, err := c.serveConn(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case plugged:
			wait, warned = minRedial, false
			c.log.Warn("pivsim: vpcd dropped the card; reconnecting", "addr", addr, "err", err)
		case !warned:
			warned = true
			c.log.Warn("pivsim: vpcd is not reachable (is pcscd with vsmartcard-vpcd running?); retrying", "addr", addr, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, maxRedial)
	}
}

// Close unplugs the card: a running Serve returns, and later ones fail.
func (c *Card) Close() error {
	c.serveMu.Lock()
	c.closed = true
	stop, done := c.stopServe, c.served
	c.serveMu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	return nil
}

// serveConn is one insertion: connect, answer until the connection ends.
func (c *Card) serveConn(ctx context.Context, addr string) (plugged bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, fmt.Errorf("connecting to vpcd: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	tcp, _ := conn.(*net.TCPConn)

	c.mu.Lock()
	c.clearSession() // a card just inserted has no session
	serial := c.st.Serial
	c.mu.Unlock()
	c.log.Debug("pivsim: card plugged", "serial", serial, "addr", addr)
	c.notify(addr, true)
	defer func() {
		c.mu.Lock()
		c.clearSession()
		c.mu.Unlock()
		c.log.Debug("pivsim: card unplugged", "serial", serial, "addr", addr)
		c.notify(addr, false)
	}()

	var hdr [2]byte
	buf := make([]byte, 0xffff)
	for {
		// vpcd writes the length and the payload in two send() calls: with
		// delayed ACKs on, each exchange stalls ~40 ms on Nagle (docs/design.md, section 8).
		// Linux turns quick ACKs off again after a while, so ask before
		// every read.
		quickAck(tcp)
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return true, fmt.Errorf("reading from vpcd: %w", err)
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		quickAck(tcp)
		if _, err := io.ReadFull(conn, buf[:n]); err != nil {
			return true, fmt.Errorf("reading from vpcd: %w", err)
		}
		if n == 0 {
			continue
		}
		reply, answer := c.handle(buf[:n])
		if !answer {
			continue
		}
		out := make([]byte, 2, 2+len(reply))
		binary.BigEndian.PutUint16(out, uint16(len(reply)))
		if _, err := conn.Write(append(out, reply...)); err != nil {
			return true, fmt.Errorf("writing to vpcd: %w", err)
		}
	}
}
