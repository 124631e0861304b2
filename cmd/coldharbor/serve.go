package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/urfave/cli/v2"

	"github.com/coldharbor/coldharbor/gate"
	"github.com/coldharbor/coldharbor/internal/httpclient"
	"github.com/coldharbor/coldharbor/internal/safefile"
	"github.com/coldharbor/coldharbor/trust"
)

func serveCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "a pull-only registry gate that serves only what the TUF repository trusts",
		Description: `Serves, on one address:
  /metadata/, /targets/  the TUF repository as static files (for list, verify and any TUF client);
  /v2/                   a read-only OCI distribution API in front of --upstream, where tags are
                         resolved through TUF (the trusted digest is fetched upstream and hashed
                         before a byte is sent), digests and blobs are answered only when a trusted
                         manifest reaches them, and everything else is refused with 412;
  /healthz, /readyz      liveness, and readiness (the metadata verifies and has not expired).

The upstream's credentials come from the Docker config (DOCKER_CONFIG); its CA
from SSL_CERT_FILE. The gate re-verifies when timestamp.json changes (--repo:
checked every --interval, default 2s; --tuf-url: every --interval, default 1m),
keeps serving the last verified state until a newer one verifies, and refuses
everything once that state expires. It keeps no state: replicas behind a load
balancer answer alike.

It gates only the clients that pull through it: point containerd (hosts.toml)
or CRI-O (registries.conf) at it, and keep clients away from the upstream.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "serve the TUF repository in `DIR`"},
			&cli.StringFlag{Name: "tuf-url", Usage: "serve the TUF repository at `URL` (metadata/ and targets/ under it)"},
			&cli.StringFlag{Name: "root", Usage: "the trusted root.json `FILE` (required with --tuf-url; check its sha256 against the ceremony's record)"},
			&cli.StringFlag{Name: "upstream", Usage: "the registry the images are in, `HOST[/PREFIX]` (import's --registry)"},
			&cli.StringFlag{Name: "listen", Usage: "listen on `ADDR`", Value: "127.0.0.1:5000"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with the certificate chain in `FILE` (PEM)"},
			&cli.StringFlag{Name: "tls-key", Usage: "the private key of --tls-cert, `FILE` (PEM)"},
			&cli.BoolFlag{Name: "require-signature", Usage: "also require a cosign signature upstream by a key of the trusted cosign.pub"},
			&cli.DurationFlag{Name: "interval", Usage: "check for a new timestamp.json every `DURATION` (default 2s with --repo, 1m with --tuf-url)"},
			&cli.StringSliceFlag{Name: "insecure-registry", Usage: "allow plain HTTP to `HOST[:PORT]` (repeat); otherwise only loopback may use it"},
			&cli.BoolFlag{Name: "verbose", Usage: "log every refusal (name, reference, reason) and reload to stderr"},
		},
		Action: func(c *cli.Context) error { return runServe(c, e) },
	}
}

func serveConfig(c *cli.Context, log *slog.Logger) (gate.Config, error) {
	cfg := gate.Config{Repo: c.String("repo"), TUFURL: c.String("tuf-url"), Upstream: c.String("upstream"),
		RequireSignature: c.Bool("require-signature"), Interval: c.Duration("interval"), Logger: log,
		Keychain: authn.DefaultKeychain, UserAgent: "coldharbor/" + version, InsecureRegistries: c.StringSlice("insecure-registry")}
	if (cfg.Repo == "") == (cfg.TUFURL == "") {
		return cfg, usagef("give exactly one of --repo DIR or --tuf-url URL")
	}
	if cfg.Upstream == "" {
		return cfg, usagef("--upstream HOST[/PREFIX] is required")
	}
	if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
		return cfg, usagef("give both --tls-cert and --tls-key, or neither")
	}
	if cfg.TUFURL != "" && c.String("root") == "" {
		return cfg, usagef("--tuf-url needs --root root.json: the gate trusts nothing it fetched first")
	}
	// HTTP/1.1 upstream: each blob streams from its own connection, not
	// through HTTP/2 frame buffers (a quarter of the gate's CPU in make
	// bench, step d).
	tr, err := httpclient.New(httpclient.WithInsecureHosts(c.StringSlice("insecure-registry")...), httpclient.WithTimeouts(gate.Timeouts()),
		httpclient.WithHTTP1())
	if err != nil {
		return cfg, usagef("--insecure-registry: %v", err)
	}
	cfg.Transport = tr
	if p := c.String("root"); p != "" {
		b, err := safefile.ReadFile(p, trust.MaxRootSize)
		if err != nil {
			return cfg, fmt.Errorf("reading the trusted root: %w", err)
		}
		cfg.Root = b
	}
	return cfg, nil
}

func runServe(c *cli.Context, e env) error {
	log := logger()
	if c.Bool("verbose") {
		log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg, err := serveConfig(c, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return withHint(err, "choose a free address with --listen")
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	g, err := gate.New(ctx, cfg)
	if err != nil {
		ln.Close()
		return err
	}
	if err := g.Ready(); err != nil {
		fmt.Fprintf(e.stderr, "coldharbor: warning: not ready: %v\n", err)
	}
	go g.Watch(ctx)
	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// HTTP/1.1 only: layers stream faster over one connection each than
		// as HTTP/2 frames multiplexed on one (make bench, step d).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	scheme := "http"
	if c.String("tls-cert") != "" {
		scheme = "https"
	}
	fmt.Fprintf(e.stderr, "coldharbor: serving %s://%s in front of %s\n", scheme, ln.Addr(), cfg.Upstream)
	done := make(chan error, 1)
	go func() {
		if scheme == "https" {
			done <- srv.ServeTLS(ln, c.String("tls-cert"), c.String("tls-key"))
		} else {
			done <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shut, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
