//go:build cgo

package hsm_test

import (
	"context"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testhsm"
	"github.com/coldharbor/coldharbor/trust"
)

// A timestamp signed on the token verifies as go-tuf clients verify it:
// canonical JSON, SHA-256 hashed here, raw ECDSA on the token.
func TestPKCS11SignsTUFMetadata(t *testing.T) {
	ctx := context.Background()
	tok := testhsm.NewToken(t, "")
	gen, err := hsm.Generate(ctx, tok.URI("object=timestamp"))
	if err != nil {
		t.Fatal(err)
	}
	gen.Close()
	k, err := hsm.Open(ctx, tok.URI("object=timestamp"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	expires := time.Now().Add(24 * time.Hour)
	root := metadata.Root(expires)
	tk, err := metadata.KeyFromPublicKey(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Signed.AddKey(tk, metadata.TIMESTAMP); err != nil {
		t.Fatal(err)
	}
	ts := metadata.Timestamp(expires)
	if err := trust.Sign(ts, metadata.TIMESTAMP, k.Signer); err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(metadata.TIMESTAMP, ts); err != nil {
		t.Fatalf("go-tuf rejects the token's signature: %v", err)
	}

	// And after the round trip through bytes that clients download.
	raw, err := ts.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	back, err := metadata.Timestamp().FromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(metadata.TIMESTAMP, back); err != nil {
		t.Fatalf("go-tuf rejects the signature read back: %v", err)
	}
	back.Signed.Version++
	if err := root.VerifyDelegate(metadata.TIMESTAMP, back); err == nil {
		t.Fatal("a changed timestamp still verifies")
	}
}
