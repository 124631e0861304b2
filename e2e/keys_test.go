//go:build cgo

package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/coldharbor/coldharbor/hsm/pivsim"
	"github.com/coldharbor/coldharbor/hsm/pivsim/pivsimtest"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

// TestKeyLifecycleWithYubiKeys: the targets key (a YubiKey) is replaced by
// three new YubiKeys with a threshold of 2 (one holder absent), and the timestamp key is
// replaced, in one root version; the targets are re-signed on the new
// YubiKeys in that sitting. The next bundle is approved in two sittings
// (one holder each, a partial approval in between that import refuses), and
// carries the rotation to the isolated side, whose import takes the new
// timestamp key and refuses the old one; refresh there likewise, and the
// real cosign verifies the images with a new targets YubiKey's key.
func TestKeyLifecycleWithYubiKeys(t *testing.T) {
	w, card, caFile := newSimWorld(t)
	yk := func(serial uint32) string { return "yubikey:serial=" + itoa(serial) + ";slot=9c" }
	key := func(k string) string { return "file:" + w.path("keys", k+".key") }
	os.MkdirAll(w.path("keys"), 0o700)
	for _, k := range []string{"root", "snapshot", "timestamp", "timestamp2"} {
		must(t, w.env, "keys", "generate", key(k))
	}
	const t1, t2, t3, t4 = 30000021, 30000022, 30000023, 30000024

	// Root v1: one root key, the targets key on YubiKey t1.
	c1 := card("t1", t1, 0)
	must(t, w.env, "keys", "generate", yk(t1), "--touch-policy", "never")
	t1pub := must(t, w.env, "keys", "pub", yk(t1))
	os.WriteFile(w.path("keys", "t1.pub"), []byte(t1pub), 0o644)
	must(t, w.env, "ceremony", "init", "--repo", w.path("signer"), "--root-key", key("root"), "--targets-key", yk(t1),
		"--snapshot-key", w.path("keys", "snapshot.key.pub"), "--timestamp-key", w.path("keys", "timestamp.key.pub"), "--attestation-ca", caFile)
	testfs.CopyDir(t, w.path("signer"), w.path("isolated"))
	testfs.CopyDir(t, w.path("signer"), w.path("exporter"))
	dest := w.dst.Host + "/mirror"
	online := func(ts string) []string {
		return []string{"--repo", w.path("isolated"), "--registry", dest, "--snapshot-key", key("snapshot"), "--timestamp-key", key(ts)}
	}
	must(t, w.env, "export", "--repo", w.path("exporter"), "--dest", dest, "-o", w.path("b1.tar"), w.src.Host+"/"+testimages.AppOne)
	must(t, w.env, "sign", w.path("b1.tar"), "--repo", w.path("signer"), "--key", yk(t1), "-o", w.path("a1.tar"), "--yes")
	must(t, w.env, append([]string{"import", w.path("b1.tar"), w.path("a1.tar")}, online("timestamp")...)...)
	pivsimtest.Unplug(t, c1)
	t1id := keyID(t, w, w.path("keys", "t1.pub"))

	// The holder of t4 is not at the rotation: only the public key comes.
	c4 := card("t4", t4, 0)
	must(t, w.env, "keys", "generate", yk(t4), "--touch-policy", "never")
	os.WriteFile(w.path("keys", "t4.pub"), []byte(must(t, w.env, "keys", "pub", yk(t4))), 0o644)
	pivsimtest.Unplug(t, c4)

	// Root v2: targets 2 of t2, t3, t4; t1 out; a new timestamp key; the
	// targets re-signed on t2 and t3 in this sitting.
	c2, c3 := card("t2", t2, 0), card("t3", t3, 1)
	for _, s := range []uint32{t2, t3} {
		must(t, w.env, "keys", "generate", yk(s), "--touch-policy", "never")
	}
	t2pub := must(t, w.env, "keys", "pub", yk(t2))
	os.WriteFile(w.path("keys", "t2.pub"), []byte(t2pub), 0o644)
	out := must(t, w.env, "ceremony", "rotate", "--repo", w.path("signer"), "--targets-key", yk(t2), "--targets-key", yk(t3), "--targets-key", w.path("keys", "t4.pub"),
		"--targets-threshold", "2", "--remove-key", t1id, "--timestamp-key", w.path("keys", "timestamp2.key.pub"),
		"--key", key("root"), "--key", yk(t2), "--key", yk(t3), "--attestation-ca", caFile)
	if !strings.Contains(out, "changed: targets, timestamp") || !strings.Contains(out, "re-signed by 2 new targets key(s)") {
		t.Fatalf("ceremony rotate:\n%s", out)
	}
	pivsimtest.Unplug(t, c3)
	out = must(t, w.env, "ceremony", "verify", "--repo", w.path("signer"), "--format", "text")
	for _, want := range []string{"Sitting 1: init", "YubiKey serial 30000021, firmware 5.7", "YubiKey serial 30000022, firmware 5.7",
		"YubiKey serial 30000023, firmware 5.7", ": rotate, ", "published metadata/2.root.json sha256", "published metadata/3.targets.json sha256", "FINAL HASH (read aloud): "} {
		if !strings.Contains(out, want) {
			t.Fatalf("the paper record does not say %q:\n%s", want, out)
		}
	}

	// The next bundle, approved in two sittings.
	must(t, w.env, "export", "--repo", w.path("exporter"), "--dest", dest, "-o", w.path("b2.tar"), w.src.Host+"/"+testimages.MultiArch)
	out = must(t, w.env, "sign", w.path("b2.tar"), "--repo", w.path("signer"), "--key", yk(t2), "-o", w.path("a2.tar"), "--yes")
	if !strings.Contains(out, "Partial approval: 1 of the 2 targets signatures; 1 more needed") {
		t.Fatalf("first sitting:\n%s", out)
	}
	pivsimtest.Unplug(t, c2)
	out = must(t, w.env, "inspect", w.path("a2.tar"), "--repo", w.path("signer"))
	if !strings.Contains(out, "PARTIAL: 1 more targets signature(s) needed (threshold 2)") {
		t.Fatalf("inspect of a partial approval:\n%s", out)
	}
	refused(t, w.env, "needs 1 more signature", append([]string{"import", w.path("b2.tar"), w.path("a2.tar")}, online("timestamp2")...)...)
	c3 = card("t3", t3, 0)
	must(t, w.env, "sign", w.path("b2.tar"), "--repo", w.path("signer"), "--approval", w.path("a2.tar"), "--key", yk(t3), "--yes")
	pivsimtest.Unplug(t, c3)
	if out = must(t, w.env, "inspect", w.path("a2.tar")); !strings.Contains(out, "state: complete") {
		t.Fatalf("inspect of the completed approval:\n%s", out)
	}

	isolatedAfterRotation(t, w, online, caFile, dest)
}

// isolatedAfterRotation: the approval of b2 carries root v2 to the
// isolated side, where the old timestamp key and unattested (by Yubico's
// CA) targets keys are refused, and the new state is accepted.
func isolatedAfterRotation(t *testing.T, w *world, online func(string) []string, caFile, dest string) {
	key := func(k string) string { return "file:" + w.path("keys", k+".key") }
	// The isolated side: the old timestamp key is refused naming the
	// rotation; the new one imports root v2, the re-signed targets and b2.
	refused(t, w.env, "root v2 rotated it out", append([]string{"import", w.path("b2.tar"), w.path("a2.tar")}, online("timestamp")...)...)
	// Attestation required: Yubico's root does not vouch for the simulator's
	// cards; the simulator's CA does.
	refused(t, w.env, "recorded attestation does not verify", append([]string{"import", w.path("b2.tar"), w.path("a2.tar"), "--require-attestation"}, online("timestamp2")...)...)
	must(t, w.env, append([]string{"import", w.path("b2.tar"), w.path("a2.tar"), "--require-attestation", "--attestation-ca", caFile}, online("timestamp2")...)...)
	refused(t, w.env, "rotated it out", "refresh", "--repo", w.path("isolated"), "--timestamp-key", key("timestamp"), "--force")
	must(t, w.env, "refresh", "--repo", w.path("isolated"), "--timestamp-key", key("timestamp2"), "--force")
	head := readHead(t, w.path("b2.tar"))
	for _, img := range head.Index.Images {
		cosignVerify(t, w, w.path("keys", "t2.pub"), dest+"/"+strings.SplitN(img.Name, ":", 2)[0]+"@"+img.Digest, true)
	}
	must(t, w.env, "verify", "--repo", w.path("isolated"), "--registry", dest, dest+"/"+testimages.MultiArch)
	refused(t, w.env, "recorded attestation does not verify", "verify", "--repo", w.path("isolated"), "--registry", dest, "--require-attestation", dest+"/"+testimages.MultiArch)
	must(t, w.env, "verify", "--repo", w.path("isolated"), "--registry", dest, "--require-attestation", "--attestation-ca", caFile, dest+"/"+testimages.MultiArch)
}

// keyID is the TUF key ID of a public-key file, as coldharbor prints it.
func keyID(t *testing.T, w *world, pub string) string {
	t.Helper()
	var k struct {
		KeyID string `json:"keyid"`
	}
	if err := json.Unmarshal([]byte(must(t, w.env, "keys", "pub", pub, "--output", "json")), &k); err != nil || k.KeyID == "" {
		t.Fatalf("key ID of %s: %v", pub, err)
	}
	return k.KeyID
}

// newSimWorld starts pcscd for software YubiKeys, the registries with two
// seeded images in the source, and one attestation CA for every simulated
// card (as Yubico's is for real ones); card plugs one into a reader.
func newSimWorld(t *testing.T) (w *world, card func(name string, serial uint32, reader int) *pivsimtest.Card, caFile string) {
	pivsimtest.StartPCSCD(t)
	w = newWorld(t)
	w.env = append(w.env, "COLDHARBOR_PIN=123456")
	fix, err := testimages.New(2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testimages.Push(context.Background(), w.src.Host, fix, remote.WithAuthFromKeychain(w.src.Keychain()), remote.WithTransport(w.src.Transport())); err != nil {
		t.Fatal(err)
	}
	caCert, caKey := newCA(t)
	caFile = w.path("sim-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o644)
	card = func(name string, serial uint32, reader int) *pivsimtest.Card {
		return pivsimtest.Plug(t, w.path(name+".card"), reader, pivsim.WithSerial(serial), pivsim.WithAttestationCA(caCert, caKey))
	}
	return w, card, caFile
}
