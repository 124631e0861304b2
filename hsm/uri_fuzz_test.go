package hsm

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestEscapedPINNamesRedacted (issue 11, finding 9): a PIN whose attribute
// name or separator is percent-escaped is still a PIN, and never shown.
func TestEscapedPINNamesRedacted(t *testing.T) {
	for _, in := range []string{
		"pkcs11:token=a?pin%2Dvalue=314159&bad",
		"pkcs11:token=a?PIN%2dVALUE=314159",
		"pkcs11:token=a;pin%2Dvalue=314159;x",
		"yubikey:serial=1;pin%3D314159",
		"yubikey:serial=1;%70in=314159",
		"pkcs11:token=a?%70in%2Dvalue%3D314159&x",
		"gcpkms://x?pin%2Dvalue=314159",
	} {
		t.Run(in, func(t *testing.T) {
			u, err := ParseURI(in)
			if err != nil && strings.Contains(err.Error(), "314159") {
				t.Fatalf("error leaks the PIN: %v", err)
			}
			if err == nil && strings.Contains(u.String(), "314159") {
				t.Fatalf("String leaks the PIN: %s", u)
			}
		})
	}
}

var alnumRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

var fuzzPINRE = regexp.MustCompile(`(?i)^pin(?:-value)?=(.*)$`)

// pinsIn returns the values of the PIN attributes in s, however escaped,
// that appear nowhere else in it.
func pinsIn(s string) []string {
	var pins []string
	tokens := strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '&' || r == '?' || r == ':' })
	for _, tok := range tokens {
		d := tok
		for range 4 {
			u, err := url.PathUnescape(d)
			if err != nil || u == d {
				break
			}
			d = u
		}
		m := fuzzPINRE.FindStringSubmatch(d)
		// PINs are letters and digits: a "PIN" with quotes or escapes in it
		// would be found in the message's own quoting.
		if m == nil || len(m[1]) < 4 || !alnumRE.MatchString(m[1]) {
			continue
		}
		// A value that appears elsewhere, also once quoted (%q turns a NUL
		// followed by "00" into "\x0000"), is not told apart from the PIN.
		rest := strings.Replace(s, tok, "", 1)
		if strings.Contains(rest, m[1]) || strings.Contains(fmt.Sprintf("%q", s), m[1]) {
			continue
		}
		pins = append(pins, m[1])
	}
	return pins
}

var redactedRE = regexp.MustCompile(`(?i)pin(-value)?=REDACTED`)

// unredacted is what is left of a message once the redaction marks are
// taken out: a "PIN" such as "pin=" would otherwise be found in them.
func unredacted(msg string) string { return redactedRE.ReplaceAllString(msg, "") }

// FuzzParseURI: key URIs come from flags, config and transcripts; parsing
// never panics, and no PIN, however escaped, reaches an error or String.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"file:cosign.key", "keys/root.pub", "yubikey:serial=12345678;slot=9c",
		"pkcs11:token=ch;object=ts?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
		"pkcs11:token=My%20Token", "yubikey:serial=1;pin=123456", "awskms:///alias/x?pin-value=9999",
		"pkcs11:token=a?pin-source=file:/p&x", "file:///abs/k.key",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err == nil && u.Scheme == SchemeFile {
			return // a file name is shown as it is: it holds no PIN
		}
		for _, pin := range pinsIn(s) {
			for _, shown := range []string{pin, url.PathEscape(pin)} {
				if err != nil && strings.Contains(unredacted(err.Error()), shown) {
					t.Fatalf("ParseURI(%q): the error shows PIN %q: %v", s, pin, err)
				}
				if err == nil && strings.Contains(unredacted(u.String()), shown) {
					t.Fatalf("ParseURI(%q): String shows PIN %q: %s", s, pin, u)
				}
			}
		}
		if err == nil {
			if _, err := ParseURI(u.String()); err != nil && u.Scheme != SchemeFile {
				t.Fatalf("String of %q = %q does not parse: %v", s, u, err)
			}
		}
	})
}
