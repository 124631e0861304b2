package hsm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestEnvOrPrompt(t *testing.T) {
	ctx := context.Background()
	u, _ := ParseURI("file:k.key")
	tests := []struct {
		name string
		env  map[string]string
		kind SecretKind
		want string
		err  error
	}{
		{name: "coldharbor first", env: map[string]string{"COLDHARBOR_PASSWORD": "a", "COSIGN_PASSWORD": "b"}, kind: Password, want: "a"},
		{name: "cosign second", env: map[string]string{"COSIGN_PASSWORD": "b"}, kind: Password, want: "b"},
		{name: "empty is a password", env: map[string]string{"COLDHARBOR_PASSWORD": ""}, kind: Password, want: ""},
		{name: "pin", env: map[string]string{"COLDHARBOR_PIN": "123456", "COLDHARBOR_PASSWORD": "x"}, kind: PIN, want: "123456"},
		{name: "no terminal", env: map[string]string{}, kind: Password, err: ErrNoSecret},
		{name: "pin not from password", env: map[string]string{"COLDHARBOR_PASSWORD": "x"}, kind: PIN, err: ErrNoSecret},
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			var out bytes.Buffer
			got, err := EnvOrPrompt(getenv, devnull, &out)(ctx, SecretRequest{Kind: tt.kind, Key: u})
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				want := "COLDHARBOR_PASSWORD"
				if tt.kind == PIN {
					want = "COLDHARBOR_PIN"
				}
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not name %s", err, want)
				}
				if out.Len() != 0 {
					t.Fatalf("prompted without a terminal: %q", out.String())
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
