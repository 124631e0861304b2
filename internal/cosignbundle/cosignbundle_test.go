package cosignbundle

import (
	"encoding/base64"
	"encoding/json"
	"testing"
)

// The statement cosign v3.1.3 signed for an image (seen here: the payload of
// its sigstore bundle for sha256:7c28…888, base64 as it stored it).
const cosignV3Payload = "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEiLCJzdWJqZWN0IjpbeyJkaWdlc3QiOnsic2hhMjU2IjoiN2MyODk0NDhhOWE5MjA1YjUyMzc0MDA0OWRhMmY1OTkzOTg3YTMzZWFiNDBjNjM1ZmYyOWQ1ZTcxYzQyOTg4OCJ9LCJhbm5vdGF0aW9ucyI6e319XSwicHJlZGljYXRlVHlwZSI6Imh0dHBzOi8vc2lnc3RvcmUuZGV2L2Nvc2lnbi9zaWduL3YxIiwicHJlZGljYXRlIjp7fX0="

func TestStatementIsCosigns(t *testing.T) {
	want, _ := base64.StdEncoding.DecodeString(cosignV3Payload)
	got := Statement("sha256:7c289448a9a9205b523740049da2f5993987a33eab40c635ff29d5e71c429888")
	if string(got) != string(want) {
		t.Fatalf("statement\n%s\nwant cosign's\n%s", got, want)
	}
}

func TestSignedStatementRoundTrip(t *testing.T) {
	d := "sha256:7c289448a9a9205b523740049da2f5993987a33eab40c635ff29d5e71c429888"
	raw, err := json.Marshal(New(d, "aGludA==", []byte("sig")))
	if err != nil {
		t.Fatal(err)
	}
	got, pae, sig, err := SignedStatement(raw)
	if err != nil || got != d || string(pae) != string(StatementPAE(d)) || string(sig) != "sig" {
		t.Fatalf("SignedStatement = %s %q %q %v", got, pae, sig, err)
	}
	for _, bad := range []string{`{}`, `not json`, `{"dsseEnvelope":{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}}`} {
		if _, _, _, err := SignedStatement([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
