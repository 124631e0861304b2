package mirror

import (
	"strings"
	"testing"

	"github.com/coldharbor/coldharbor/bundle"
)

// An index's walked children must be exactly the ones its approval signs:
// a bundle from before children were signed is refused with what to do,
// and a signed digest the image does not hold, or a child left unsigned,
// is refused.
func TestCheckChildren(t *testing.T) {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	walked := []manifestPush{{digest: d("a")}, {digest: d("b")}, {digest: d("f")}} // the index last
	for _, c := range []struct {
		name     string
		children []string
		want     string
	}{
		{"all signed", []string{d("a"), d("b")}, ""},
		{"older bundle", nil, "export and sign it again"},
		{"foreign child", []string{d("a"), d("c")}, "does not hold it"},
		{"child unsigned", []string{d("a")}, "has no signature in the bundle"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ip := &imagePlan{img: bundle.Image{Name: "app/multi:1", Digest: d("f")}, manifests: walked}
			for _, k := range c.children {
				ip.img.Children = append(ip.img.Children, bundle.Child{Digest: k})
			}
			err := checkChildren(ip)
			if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("checkChildren: %v, want %q", err, c.want)
			}
		})
	}
	single := &imagePlan{img: bundle.Image{Name: "app/one:1", Digest: d("e")}, manifests: []manifestPush{{digest: d("e")}}}
	if err := checkChildren(single); err != nil {
		t.Errorf("a single manifest: %v", err)
	}
}
