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

	"github.com/google/go-containerregistry/pkg/v1/remote"
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
