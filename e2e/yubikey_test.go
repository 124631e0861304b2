//go:build cgo

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coldharbor/coldharbor/hsm/pivsim/pivsimtest"
	"github.com/coldharbor/coldharbor/internal/testfs"
	"github.com/coldharbor/coldharbor/internal/testimages"
)

// TestPipelineWithYubiKeys runs the whole job with software YubiKeys on
// pcscd, through piv-go exactly as with hardware: four holders (three root,
// one targets) and two card readers, so the ceremony is held one holder
// after another; then a bundle signed on the targets YubiKey is imported and
// the real cosign verifies the images with that YubiKey's public key.
func TestPipelineWithYubiKeys(t *testing.T) {
	w, card, caFile := newSimWorld(t)
	yk := func(serial string) string { return "yubikey:serial=" + serial + ";slot=9c" }

	// Holder 3 and the targets holder come first, alone: each generates on
	// the device and leaves the public key (and the attestation is checked).
	os.MkdirAll(w.path("keys"), 0o700)
	for _, h := range []struct {
		name   string
		serial uint32
	}{{"root3", 30000003}, {"targets", 30000004}} {
		c := card(h.name, h.serial, 0)
		pub := must(t, w.env, "keys", "generate", yk(itoa(h.serial)), "--touch-policy", "never")
		os.WriteFile(w.path("keys", h.name+".pub"), []byte(pub), 0o644)
		out := must(t, w.env, "keys", "attest", yk(itoa(h.serial)), "--attestation-ca", caFile)
		if !strings.Contains(out, "serial "+itoa(h.serial)) || !strings.Contains(out, "firmware 5.7") {
			t.Fatalf("keys attest: %s", out)
		}
		// Yubico's root does not vouch for a simulator: exit 3.
		refused(t, w.env, "attestation", "keys", "attest", yk(itoa(h.serial)))
		pivsimtest.Unplug(t, c)
	}
	for _, k := range []string{"snapshot", "timestamp"} {
		must(t, w.env, "keys", "generate", "file:"+w.path("keys", k+".key"))
	}

	// Holders 1 and 2 together, one in each reader: root reaches 2 of 3.
	r1, r2 := card("root1", 30000001, 0), card("root2", 30000002, 1)
	for _, s := range []string{"30000001", "30000002"} {
		must(t, w.env, "keys", "generate", yk(s), "--touch-policy", "never")
	}
	initArgs := []string{"ceremony", "init", "--repo", w.path("signer"),
		"--root-key", yk("30000001"), "--root-key", yk("30000002"), "--root-key", w.path("keys", "root3.pub"), "--root-threshold", "2",
		"--targets-key", w.path("keys", "targets.pub"),
		"--snapshot-key", w.path("keys", "snapshot.key.pub"), "--timestamp-key", w.path("keys", "timestamp.key.pub")}
	refused(t, w.env, "attestation does not verify", initArgs...)
	out := must(t, w.env, append(initArgs, "--attestation-ca", caFile)...)
	if !strings.Contains(out, "Ceremony pending") || !strings.Contains(out, "targets needs 1 more") {
		t.Fatalf("ceremony init:\n%s", out)
	}
	pivsimtest.Unplug(t, r1)
	pivsimtest.Unplug(t, r2)

	// The targets holder signs last: the ceremony completes and publishes.
	tc := card("targets", 30000004, 0)
	out = must(t, w.env, "ceremony", "sign", "--repo", w.path("signer"), "--key", yk("30000004"), "--attestation-ca", caFile)
	if !strings.Contains(out, "Created TUF repository") {
		t.Fatalf("ceremony sign:\n%s", out)
	}
	transcript, _ := os.ReadFile(w.path("signer", "transcript.jsonl"))
	for _, want := range []string{`"serial":30000001`, `"serial":30000002`, `"serial":30000004`, `"pin_policy":"once"`} {
		if !strings.Contains(string(transcript), want) {
			t.Errorf("the transcript does not record %s", want)
		}
	}
	testfs.CopyDir(t, w.path("signer"), w.path("isolated"))
	testfs.CopyDir(t, w.path("signer"), w.path("exporter"))

	// The pipeline, signed on the targets YubiKey.
	dest := w.dst.Host + "/mirror"
	must(t, w.env, "export", "--repo", w.path("exporter"), "--dest", dest, "-o", w.path("b.tar"),
		w.src.Host+"/"+testimages.AppOne, w.src.Host+"/"+testimages.MultiArch)
	must(t, w.env, "sign", w.path("b.tar"), "--repo", w.path("signer"), "--key", yk("30000004"), "-o", w.path("a.tar"), "--yes")
	pivsimtest.Unplug(t, tc)
	must(t, w.env, "import", w.path("b.tar"), w.path("a.tar"), "--repo", w.path("isolated"), "--registry", dest,
		"--snapshot-key", "file:"+w.path("keys", "snapshot.key"), "--timestamp-key", "file:"+w.path("keys", "timestamp.key"))
	head := readHead(t, w.path("b.tar"))
	for _, img := range head.Index.Images {
		ref := dest + "/" + strings.SplitN(img.Name, ":", 2)[0] + "@" + img.Digest
		cosignVerify(t, w, w.path("keys", "targets.pub"), ref, true)
	}
	must(t, w.env, "verify", "--repo", w.path("isolated"), "--registry", dest, dest+"/"+testimages.AppOne)
}

func itoa(n uint32) string { return big.NewInt(int64(n)).String() }

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "coldharbor test PIV attestation CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
