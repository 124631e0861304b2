package main

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/coldharbor/coldharbor/internal/httpclient"
)

// networkFlags are the flags of every command that talks to a registry or
// a TUF server. def is the command's overall deadline.
func networkFlags(def time.Duration) []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "insecure-registry", Usage: "allow plain HTTP to `HOST[:PORT]` (repeat); otherwise only loopback may use it, so credentials never travel in clear text"},
		&cli.DurationFlag{Name: "timeout", Usage: "give up after `DURATION` in all (each connection also times out when it stalls)", Value: def},
	}
}

// transport is the one HTTP transport of a command: bounded dial, TLS,
// response-header and idle timeouts; plain HTTP only to loopback or a host
// named with --insecure-registry.
func transport(c *cli.Context) (http.RoundTripper, error) {
	tr, err := httpclient.New(httpclient.WithInsecureHosts(c.StringSlice("insecure-registry")...))
	if err != nil {
		return nil, usagef("--insecure-registry: %v", err)
	}
	return tr, nil
}

// withDeadline bounds the whole command by --timeout.
func withDeadline(c *cli.Context) (context.Context, context.CancelFunc) {
	if d := c.Duration("timeout"); d > 0 {
		return context.WithTimeout(c.Context, d)
	}
	return context.WithCancel(c.Context)
}

// remoteOptions: credentials from the Docker config (DOCKER_CONFIG or
// ~/.docker/config.json) as crane and cosign read them; custom CAs through
// SSL_CERT_FILE, which Go's TLS reads; the command's transport.
func remoteOptions(c *cli.Context) ([]remote.Option, error) {
	tr, err := transport(c)
	if err != nil {
		return nil, err
	}
	return []remote.Option{
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("coldharbor/" + version),
		remote.WithTransport(tr),
	}, nil
}

// progress returns a byte progress bar on stderr when stderr is a
// terminal, and nil (no output) otherwise: logs and cron mail stay clean.
func progress(e env, label string) func(done, total int64) {
	f, ok := e.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	var bar *progressbar.ProgressBar
	return func(done, total int64) {
		if bar == nil {
			bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(f), progressbar.OptionShowBytes(true),
				progressbar.OptionSetDescription(label), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(), progressbar.OptionSetWidth(30))
		}
		bar.Set64(done)
	}
}
