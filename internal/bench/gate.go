package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/coldharbor/coldharbor/internal/testregistry"
)

// gateRounds: direct and gated pulls alternate this many times; the best
// of each is reported, so a burst of load from elsewhere on the machine
// does not decide the ratio.
const gateRounds = 3

// gateStep is d: `crane pull` of every image straight from the target
// registry against the same pull through `coldharbor serve` in front of it
// (TLS on both; the gate verifies every manifest and blob on the way). Both
// reach the registry itself, not its counting relay: the gate keeps its
// upstream connections open, which the relay counts only once closed.
func (b *bench) gateStep(ctx context.Context) (row, error) {
	fmt.Fprintln(b.o.log, "d. pull every image directly, and through coldharbor serve")
	g, stop, err := b.startGate(ctx)
	if err != nil {
		return row{}, err
	}
	r := row{step: "d. pull through serve (crane: direct)"}
	for i := range gateRounds {
		direct, err := b.pullAll(ctx, b.tgtReg.Host+"/ch-a", fmt.Sprintf("d-direct-%d", i))
		if err != nil {
			stop()
			return row{}, err
		}
		gated, err := b.pullAll(ctx, g, fmt.Sprintf("d-gate-%d", i))
		if err != nil {
			stop()
			return row{}, err
		}
		if !r.crane.valid || direct.wall < r.crane.wall {
			r.crane = direct
		}
		if !r.ch.valid || gated.wall < r.ch.wall {
			r.ch = gated
		}
	}
	rss := stop()
	total := float64(b.work.total) / (1 << 20)
	r.note = fmt.Sprintf("best of %d: direct %.0f MiB/s, through the gate %.0f MiB/s = %.0f%% of direct (goal >= 90%%); gate peak RSS %s",
		gateRounds, total/r.crane.wall.Seconds(), total/r.ch.wall.Seconds(), 100*r.crane.wall.Seconds()/r.ch.wall.Seconds(), mib(rss))
	return r, nil
}

// pullAll pulls every image of the workload from host/… into a fresh OCI
// layout, with crane.
func (b *bench) pullAll(ctx context.Context, prefix, out string) (measurement, error) {
	args := []string{"pull", "--format=oci"}
	for _, n := range b.work.names {
		args = append(args, prefix+"/"+n)
	}
	m, err := b.exec(ctx, b.o.crane, append(args, b.path(out))...)
	if err == nil {
		err = os.RemoveAll(b.path(out))
	}
	return m, err
}

// startGate runs `coldharbor serve` over the isolated repository in front
// of the target registry, with a certificate the bench's CA bundle
// trusts. stop ends it and returns its peak RSS.
func (b *bench) startGate(ctx context.Context) (host string, stop func() int64, err error) {
	caPEM, certPEM, keyPEM, err := testregistry.MakeCerts()
	if err != nil {
		return "", nil, err
	}
	for name, data := range map[string][]byte{"gate.crt": certPEM, "gate.key": keyPEM} {
		if err := os.WriteFile(b.path(name), data, 0o600); err != nil {
			return "", nil, err
		}
	}
	if err := appendFile(envValue(b.env, "SSL_CERT_FILE"), caPEM); err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, b.o.coldharbor, "serve", "--repo", b.path("isolated"), "--upstream", b.tgtReg.Host+"/ch-a",
		"--listen", "127.0.0.1:0", "--tls-cert", b.path("gate.crt"), "--tls-key", b.path("gate.key"))
	cmd.Env, cmd.Dir = b.env, b.dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() int64 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			return ru.Maxrss * 1024
		}
		return 0
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "coldharbor: serving https://"); ok {
				addr <- strings.Fields(rest)[0]
			}
		}
	}()
	select {
	case host = <-addr:
		return host, stop, nil
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, fmt.Errorf("coldharbor serve did not start within 30 s")
	}
}

func envValue(env []string, k string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, k+"="); ok {
			return v
		}
	}
	return ""
}

func appendFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
