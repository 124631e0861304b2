package hsm

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/coldharbor/coldharbor/internal/testenv"
)

// TestCosignCLIInterop runs the pinned cosign CLI both ways: a key cosign
// generates opens here and its signatures verify with cosign.pub; a key we
// generate signs a blob with `cosign sign-blob` and `cosign verify-blob`
// accepts it with our .pub.
func TestCosignCLIInterop(t *testing.T) {
	cosign, env := testenv.Cosign(t)
	ctx := context.Background()
	dir := t.TempDir()
	run := func(password string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(env, "COSIGN_PASSWORD="+password)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.String()
	}

	// cosign → coldharbor
	run("their-pw", "generate-key-pair", "--output-key-prefix", "theirs")
	k, err := Open(ctx, "file:"+filepath.Join(dir, "theirs.key"), WithSecrets(StaticSecret("their-pw")))
	if err != nil {
		t.Fatalf("a key from cosign generate-key-pair does not open: %v", err)
	}
	pub, err := Open(ctx, filepath.Join(dir, "theirs.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cryptoutils.EqualKeys(k.Public, pub.Public); err != nil {
		t.Fatal(err)
	}
	blob := []byte("signed by coldharbor with cosign's key\n")
	os.WriteFile(filepath.Join(dir, "blob1"), blob, 0o644)
	sig, err := k.Signer.SignMessage(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "blob1.sig"), []byte(base64.StdEncoding.EncodeToString(sig)), 0o644)
	run("", "verify-blob", "--key", "theirs.pub", "--signature", "blob1.sig", "--insecure-ignore-tlog=true", "blob1")

	// coldharbor → cosign
	if _, err := Generate(ctx, "file:"+filepath.Join(dir, "ours.key"), WithSecrets(StaticSecret("our-pw"))); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "blob2"), []byte("signed by cosign with coldharbor's key\n"), 0o644)
	run("our-pw", "sign-blob", "--key", "ours.key", "--tlog-upload=false", "--yes", "--output-signature", "blob2.sig", "blob2")
	run("", "verify-blob", "--key", "ours.key.pub", "--signature", "blob2.sig", "--insecure-ignore-tlog=true", "blob2")
	sigB64, _ := os.ReadFile(filepath.Join(dir, "blob2.sig"))
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sigB64)))
	if err != nil {
		t.Fatal(err)
	}
	ourPub, _ := Open(ctx, filepath.Join(dir, "ours.key.pub"))
	if err := VerifySignature(ourPub.Public, []byte("signed by cosign with coldharbor's key\n"), raw); err != nil {
		t.Fatalf("cosign's signature with our key does not verify here: %v", err)
	}

	// A wrong password is refused by cosign too: the format is the same.
	cmd := exec.CommandContext(ctx, cosign, "sign-blob", "--key", "ours.key", "--tlog-upload=false", "--yes", "blob2")
	cmd.Dir, cmd.Env = dir, append(env, "COSIGN_PASSWORD=wrong")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("cosign signed with a wrong password:\n%s", out)
	}
}
