package main

import (
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// remoteOptions: credentials from the Docker config (DOCKER_CONFIG or
// ~/.docker/config.json) as crane and cosign read them; custom CAs through
// SSL_CERT_FILE, which Go's TLS reads.
func remoteOptions(c *cli.Context) []remote.Option {
	return []remote.Option{
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("coldharbor/" + version),
	}
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
