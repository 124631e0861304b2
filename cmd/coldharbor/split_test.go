package main

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"": 0, "4096": 4096, "64K": 64 << 10, "64k": 64 << 10, "500M": 500 << 20, "2G": 2 << 30,
		"4G": 4<<30 - 1, // FAT32's largest file
		"8G": 8 << 30,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "-1", "4T", "G", "1.5G", "99999999999G"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}
