package main

import (
	"strings"
	"testing"
)

// TestControlCharactersNotPrinted (issue 11, finding 9): escape sequences
// in a file: path (or anything else an error repeats) never reach the
// terminal raw.
func TestControlCharactersNotPrinted(t *testing.T) {
	for _, uri := range []string{"file:/nonexistent/\x1b[2J\x1b]0;owned\x07key", "/nonexistent/\x1b[31mred\x9bkey"} {
		r := coldharbor(t, pw, "keys", "pub", uri)
		if r.code == 0 {
			t.Fatalf("keys pub %q succeeded", uri)
		}
		for _, c := range []string{"\x1b", "\x07", "\x9b"} {
			if strings.Contains(r.stderr+r.stdout, c) {
				t.Fatalf("output holds control character %q:\n%q", c, r.stderr)
			}
		}
		if !strings.Contains(r.stderr, `\x1b`) {
			t.Errorf("the escape is not shown escaped: %q", r.stderr)
		}
	}
}
