package gate

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// endless is a body that never ends.
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '{'
	}
	e.read += int64(len(p))
	return len(p), nil
}

func TestStreamVerified(t *testing.T) {
	blob := bytes.Repeat([]byte("layer"), 100000)
	for _, tc := range []struct {
		name     string
		body     io.Reader
		size     int64
		want     v1.Hash
		ok       bool
		wantSent int64
	}{
		{"the blob", bytes.NewReader(blob), int64(len(blob)), hashOf(blob), true, int64(len(blob))},
		{"empty", bytes.NewReader(nil), 0, hashOf(nil), true, 0},
		{"other bytes: the last byte is held back", bytes.NewReader(append(blob[:len(blob)-1:len(blob)-1], 'X')), int64(len(blob)), hashOf(blob), false, int64(len(blob)) - 1},
		{"short body", bytes.NewReader(blob[:1000]), int64(len(blob)), hashOf(blob), false, 1000},
		{"endless body: read no further than the size", &endless{}, 4096, hashOf(blob), false, 4095},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := streamVerified(&out, tc.body, tc.want, tc.size)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if int64(out.Len()) != tc.wantSent {
				t.Errorf("sent %d bytes, want %d", out.Len(), tc.wantSent)
			}
			if e, ok := tc.body.(*endless); ok && e.read > tc.size+copyBufSize {
				t.Errorf("read %d bytes of an endless body for a blob of %d", e.read, tc.size)
			}
		})
	}
}

func TestSplitPath(t *testing.T) {
	for _, tc := range []struct{ in, repo, kind, ref string }{
		{"app/manifests/1.0", "app", "manifests", "1.0"},
		{"a/b/c/manifests/sha256:abc", "a/b/c", "manifests", "sha256:abc"},
		{"a/blobs/sha256:abc", "a", "blobs", "sha256:abc"},
		{"a/manifests/blobs/manifests/x", "a/manifests/blobs", "manifests", "x"},
		{"a/b/tags/list", "a/b", "tags", ""},
		{"a/referrers/sha256:abc", "a", "referrers", "sha256:abc"},
		{"a/b", "a/b", "", ""},
	} {
		repo, kind, ref := splitPath(tc.in)
		if repo != tc.repo || kind != tc.kind || ref != tc.ref {
			t.Errorf("splitPath(%q) = %q %q %q, want %q %q %q", tc.in, repo, kind, ref, tc.repo, tc.kind, tc.ref)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	for _, tc := range []struct {
		in, repo, tag string
		ok            bool
	}{
		{"app/one:1.0", "app/one", "1.0", true},
		{"cosign.pub", "", "", false},
		{"host:5000/app", "", "", false},
		{":x", "", "", false},
	} {
		repo, tag, ok := splitTarget(tc.in)
		if repo != tc.repo || tag != tc.tag || ok != tc.ok {
			t.Errorf("splitTarget(%q) = %q %q %v", tc.in, repo, tag, ok)
		}
	}
}

func TestTargetFailure(t *testing.T) {
	tg := target{name: "app:1", digest: hashOf([]byte("m")), size: 10}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errNotFound, "is not in the upstream registry"},
		{&digestError{want: tg.digest.String(), got: "sha256:00"}, "answered sha256:00 for the trusted digest"},
		{&sizeError{what: "m", limit: 10}, "more than the 10 bytes"},
		{errors.New("connection refused"), ""},
	} {
		got := targetFailure(tg, tc.err)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("targetFailure(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestSigns(t *testing.T) {
	d := hashOf([]byte("image"))
	good := `{"critical":{"identity":{"docker-reference":"r/app"},"image":{"docker-manifest-digest":"` + d.String() + `"},"type":"cosign container image signature"},"optional":null}`
	if !signs([]byte(good), d) {
		t.Error("a payload naming the digest does not sign it")
	}
	if signs([]byte(good), hashOf([]byte("other"))) {
		t.Error("a payload signs a digest it does not name")
	}
	if signs([]byte(strings.Replace(good, "cosign container image signature", "other", 1)), d) {
		t.Error("a payload of another type signs")
	}
}
