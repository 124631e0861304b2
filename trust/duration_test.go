package trust

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"24h", 24 * time.Hour, true},
		{"30d", 30 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"45s", 45 * time.Second, true},
		{"0d", 0, false},
		{"-1h", 0, false},
		{"d", 0, false},
		{"1w", 0, false},
		{"", 0, false},
		{"1.5d", 0, false},
		{"99999d", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormatDurationRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{time.Second, 30 * time.Second, 90 * time.Minute, 6 * time.Hour, 36 * time.Hour, 365 * 24 * time.Hour} {
		s := FormatDuration(d)
		back, err := ParseDuration(s)
		if err != nil || back != d {
			t.Errorf("FormatDuration(%v) = %q, parses back to %v, %v", d, s, back, err)
		}
	}
	if got := FormatDuration(30 * 24 * time.Hour); got != "30d" {
		t.Errorf("30 days formats as %q", got)
	}
}

// The documented defaults are the real ones (docs/design.md's table, the status help).
func TestDefaults(t *testing.T) {
	want := map[string]string{Root: "365d", Targets: "90d", Snapshot: "7d", Timestamp: "1d"}
	for r, d := range DefaultExpiry() {
		if FormatDuration(d) != want[r] {
			t.Errorf("default %s expiry %s, documented %s", r, FormatDuration(d), want[r])
		}
	}
	warn := map[string]string{Root: "30d", Targets: "30d", Snapshot: "1d", Timestamp: "6h"}
	for r, d := range DefaultWarn() {
		if FormatDuration(d) != warn[r] {
			t.Errorf("default %s warning %s, documented %s", r, FormatDuration(d), warn[r])
		}
	}
}
