package bundle

import (
	"os"
	"strings"
	"testing"
)

func TestValidTargetName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"library/alpine:3.20", true},
		{"apps/two:v1..2", true},
		{"a/b:sha256-" + strings.Repeat("a", 64) + ".sig", false},
		{"a/b:sha256-" + strings.Repeat("a", 64) + ".att", false},
		{"a/b:sha256-" + strings.Repeat("a", 64), true},
		{"x/" + strings.Repeat("a", 160) + ":" + strings.Repeat("t", 9), true},
		{"x/" + strings.Repeat("a", 160) + ":" + strings.Repeat("t", 10), false},
		{"Upper/case:1", false},
		{"../up:1", false},
	} {
		if err := ValidTargetName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidTargetName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// Strings a signer is shown cannot carry terminal escapes: a hostile
// bundle could otherwise redraw the change list the approval is given on.
func TestIndexRefusesControlCharacters(t *testing.T) {
	raw, err := os.ReadFile("../testdata/golden/index.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseIndex(raw, "golden"); err != nil {
		t.Fatalf("the golden index does not parse: %v", err)
	}
	for _, field := range []string{`"source": "`, `"tool": "`, `"media_type": "`} {
		bad := strings.Replace(string(raw), field, field+`\u001b[1A\u001b[2K`, 1)
		if _, err := parseIndex([]byte(bad), "hostile"); !IsFormatError(err) || !strings.Contains(err.Error(), "control") {
			t.Errorf("escape in %s: %v", field, err)
		}
	}
}
