package testharbor

import (
	"fmt"
	"net"
	"testing"
)

func TestRepoPath(t *testing.T) {
	for in, want := range map[string]string{"app": "app", "app/one": "app%252Fone", "a/b/c": "a%252Fb%252Fc"} {
		if got := RepoPath(in); got != want {
			t.Errorf("RepoPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// The ports handed to harbor.sh are free, distinct, and the registry's
// debug port (REG_PORT+1) is free too.
func TestFreePorts(t *testing.T) {
	ports, err := freePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 5 || ports[4] != ports[3]+1 {
		t.Fatalf("ports %v: want 5, the last two consecutive", ports)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d twice in %v", p, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}
