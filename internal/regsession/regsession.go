// Package regsession gives a whole run one registry session per
// repository: go-containerregistry's remote.Get, Put and WriteLayer each
// build a new transport otherwise, which pings /v2/ (trying TLS first even
// on a plain-HTTP loopback port) and fetches a token on every call. A
// remote.Pusher and a remote.Puller keep one transport and one token per
// repository for as long as they live (remote.Reuse).
package regsession

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/internal/httpclient"
)

// Options returns opts with ctx and one pusher and one puller made from
// them, shared by every call that is given the result. Options later in
// opts (a caller's own remote.Reuse) still win.
func Options(ctx context.Context, opts []remote.Option) ([]remote.Option, error) {
	pusher, err := remote.NewPusher(opts...)
	if err != nil {
		return nil, fmt.Errorf("registry options: %w", err)
	}
	puller, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, fmt.Errorf("registry options: %w", err)
	}
	return append([]remote.Option{remote.WithContext(ctx), remote.Reuse(pusher), remote.Reuse(puller)}, opts...), nil
}

// NameOptions returns opts with name.Insecure added when the registry of
// ref (its part before the first "/", or all of it for a bare HOST[:PORT])
// is one of insecure, the hosts named with --insecure-registry.
// go-containerregistry decides the scheme from the parsed name: without
// name.Insecure it tries plain HTTP only for loopback, RFC 1918 addresses
// and *.localhost, so any other named host would never get it.
func NameOptions(insecure []string, ref string, opts ...name.Option) []name.Option {
	host, _, _ := strings.Cut(ref, "/")
	if len(insecure) > 0 && httpclient.Named(insecure, host) {
		opts = append(opts, name.Insecure)
	}
	return opts
}
