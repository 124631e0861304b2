package ceremony

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/internal/testkeys"
	"github.com/coldharbor/coldharbor/trust"
)

// sealedRepo is a ceremony held in two sittings (two root holders, then
// the third with the targets key) and a rotation.
func sealedRepo(t *testing.T) (string, keyset) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t)
	o := twoOfThree(dir, k, time.Time{})
	o.TargetsKeys = []*hsm.Key{testkeys.PublicOnly(k.targets)}
	if _, err := Init(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(ctx, SignOptions{Dir: dir, Keys: []*hsm.Key{k.targets}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(ctx, RotateOptions{Dir: dir, Keys: []*hsm.Key{k.root[0], k.root[1]}}); err != nil {
		t.Fatal(err)
	}
	return dir, k
}

func TestTranscriptSittingsSealed(t *testing.T) {
	dir, k := sealedRepo(t)
	rep, err := Verify(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, s := range rep.Sittings {
		kinds = append(kinds, s.Kind)
	}
	// init (pending), the targets holder's sign (which publishes, sealed
	// before and after the publication), the rotation.
	if got := strings.Join(kinds, ","); got != "init,sign,publication,rotate" {
		t.Fatalf("sittings %s", got)
	}
	tid, _ := trust.KeyID(k.targets.Public)
	if h := rep.Sittings[1].Holders; len(h) != 1 || h[0] != tid {
		t.Fatalf("the sign sitting is sealed by %v", h)
	}
	if rep.Sittings[3].Files["metadata/2.root.json"] == "" || rep.Sittings[len(rep.Sittings)-1].Hash != rep.TranscriptHead {
		t.Fatalf("rotation sitting %+v", rep.Sittings[3])
	}
}

// An edited transcript whose hash chain was recomputed fails on the seal;
// one re-sealed by a key the root does not name fails too; so does one
// whose last seal was cut off.
func TestTranscriptTamperingRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func([]Entry) []Entry
		want string
	}{
		{"edited", func(es []Entry) []Entry {
			es[0].Detail["tool"] = "someone else"
			return es
		}, "does not verify over the record before it"},
		{"re-signed", func(es []Entry) []Entry {
			es[0].Detail["tool"] = "someone else"
			return es
		}, "does not name"},
		{"cut", nil, "not sealed"},
		{"re-signed by the timestamp key", func(es []Entry) []Entry {
			es[0].Detail["tool"] = "someone else"
			return es
		}, "online (snapshot, timestamp) keys only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, k := sealedRepo(t)
			path := filepath.Join(dir, trust.TranscriptFile)
			es, err := readEntries(path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.edit == nil {
				// The last seal cut off: the chain of what is left holds.
				b, _ := os.ReadFile(path)
				lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
				os.WriteFile(path, []byte(strings.Join(lines[:len(lines)-1], "")), 0o644)
			} else {
				var key *hsm.Key
				switch tc.name {
				case "re-signed":
					key = testkeys.New(t, "attacker.key")
				case "re-signed by the timestamp key":
					key = k.timestamp
				}
				rewrite(t, path, tc.edit(es), key)
			}
			_, err = Verify(context.Background(), dir)
			if !trust.IsVerification(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify: %v", err)
			}
		})
	}
}

// rewrite writes entries with a recomputed hash chain; with attacker set,
// it re-signs every seal with that key.
func rewrite(t *testing.T, path string, es []Entry, attacker *hsm.Key) {
	var aid string
	if attacker != nil {
		aid, _ = trust.KeyID(attacker.Public)
	}
	reseal := attacker != nil
	var buf bytes.Buffer
	prev := ""
	for _, e := range es {
		e.Prev = prev
		if reseal && e.Step == stepSeal {
			sig, err := attacker.Signer.SignMessage(strings.NewReader(prev))
			if err != nil {
				t.Fatal(err)
			}
			e.KeyIDs = []string{aid}
			e.Detail = map[string]any{"signatures": []SealSignature{{KeyID: aid, Signature: base64.StdEncoding.EncodeToString(sig)}}}
		}
		line, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(line)
		prev = hex.EncodeToString(sum[:])
		buf.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
