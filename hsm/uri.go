package hsm

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Scheme is the kind of place a key lives in. The zero value means unset.
type Scheme int

const (
	SchemeFile Scheme = iota + 1
	SchemeYubiKey
	SchemePKCS11
)

func (s Scheme) String() string {
	switch s {
	case SchemeFile:
		return "file"
	case SchemeYubiKey:
		return "yubikey"
	case SchemePKCS11:
		return "pkcs11"
	}
	return "unset"
}

// URI is a parsed key URI.
type URI struct {
	Scheme Scheme
	// Path is the file of a file: URI.
	Path string
	// Attrs are the path attributes of yubikey: and pkcs11: URIs
	// ("serial", "slot"; "token", "object", "id", …), percent-decoded.
	Attrs map[string]string
	// Query holds a pkcs11: URI's query attributes (module-path, pin-value, pin-source).
	Query map[string]string
}

// schemeRE matches an RFC 3986 scheme followed by a colon, which is how we
// tell "gcpkms://x" (an unknown scheme) from "keys/a.pub" (a bare path).
var schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*):`)

// ParseURI parses a key URI. A string with no scheme is a file path.
func ParseURI(s string) (URI, error) {
	if s == "" {
		return URI{}, fmt.Errorf("empty key URI")
	}
	m := schemeRE.FindStringSubmatch(s)
	if m == nil {
		return URI{Scheme: SchemeFile, Path: s}, nil
	}
	rest := s[len(m[0]):]
	switch strings.ToLower(m[1]) {
	case "file":
		rest = strings.TrimPrefix(rest, "//")
		if rest == "" {
			return URI{}, fmt.Errorf("key URI %q names no file", s)
		}
		return URI{Scheme: SchemeFile, Path: rest}, nil
	case "yubikey":
		attrs, err := parseAttrs(rest, ";")
		if err != nil {
			return URI{}, fmt.Errorf("key URI %q: %w", redact(s), err)
		}
		for k := range attrs {
			if k != "serial" && k != "slot" {
				return URI{}, fmt.Errorf("key URI %q: unknown attribute %q (yubikey: takes serial and slot; the PIN comes from COLDHARBOR_PIN)", redact(s), k)
			}
		}
		return URI{Scheme: SchemeYubiKey, Attrs: attrs}, nil
	case "pkcs11":
		path, query, _ := strings.Cut(rest, "?")
		attrs, err := parseAttrs(path, ";")
		if err != nil {
			return URI{}, fmt.Errorf("key URI %q: %w", redact(s), err)
		}
		q, err := parseAttrs(query, "&")
		if err != nil {
			return URI{}, fmt.Errorf("key URI %q: %w", redact(s), err)
		}
		return URI{Scheme: SchemePKCS11, Attrs: attrs, Query: q}, nil
	}
	return URI{}, fmt.Errorf("unknown key scheme %q in %q: use file:PATH, yubikey:[serial=N;slot=9c] or pkcs11:token=…;object=…", m[1], redact(s))
}

// attrNameRE is what RFC 7512 attribute names (and ours) are made of;
// anything else is a typo that could hide a PIN from redaction.
var attrNameRE = regexp.MustCompile(`^[a-z0-9-]+$`)

func parseAttrs(s, sep string) (map[string]string, error) {
	attrs := map[string]string{}
	if s == "" {
		return attrs, nil
	}
	for _, part := range strings.Split(s, sep) {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("attribute %q is not name=value", redactToken(part))
		}
		// RFC 7512 lets any character be percent-encoded, names too: a
		// "pin%2Dvalue" is a pin-value and must be hidden like one.
		dk, err := url.PathUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("attribute name %q: %w", redactToken(k), err)
		}
		dv, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", redactToken(dk), err)
		}
		k = strings.ToLower(dk)
		if !attrNameRE.MatchString(k) {
			return nil, fmt.Errorf("attribute %q: a name is letters, digits and '-'", redactToken(part))
		}
		if _, dup := attrs[k]; dup {
			return nil, fmt.Errorf("attribute %q given twice", redactToken(k))
		}
		attrs[k] = dv
	}
	return attrs, nil
}

// String renders the URI in canonical form with secrets (pin-value) removed,
// so it can be logged and written to a transcript.
func (u URI) String() string {
	switch u.Scheme {
	case SchemeFile:
		return "file:" + u.Path
	case SchemeYubiKey:
		return redact("yubikey:" + joinAttrs(u.Attrs, ";", secretAttrs()))
	case SchemePKCS11:
		s := "pkcs11:" + joinAttrs(u.Attrs, ";", secretAttrs())
		if q := joinAttrs(u.Query, "&", secretAttrs()); q != "" {
			s += "?" + q
		}
		// A value may itself hold "pin=…" (separators mixed up): hide it too.
		return redact(s)
	}
	return "unset:"
}

func joinAttrs(m map[string]string, sep string, hide map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if !hide[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := url.PathEscape(m[k])
		if sep == "&" {
			// RFC 7512 allows "/" in query values (pk11-qres-avail): keep
			// module paths readable.
			v = strings.ReplaceAll(v, "%2F", "/")
		}
		parts[i] = k + "=" + v
	}
	return strings.Join(parts, sep)
}

// secretAttrs are attributes never shown, wherever in a URI they stand.
func secretAttrs() map[string]bool { return map[string]bool{"pin-value": true, "pin": true} }

// redact removes PINs from a raw URI before it goes into an error: each
// attribute is percent-decoded (repeatedly, so no escaping of its name or
// of its "=" hides it) before it is checked.
var (
	pinValueRE = regexp.MustCompile(`(?i)(pin(?:-value)?=)[^&;?]*`)
	// pinTokenRE: within one attribute, all that follows the name is its value.
	pinTokenRE = regexp.MustCompile(`(?i)(pin(?:-value)?=).*`)
)

func redact(s string) string {
	var b strings.Builder
	for s != "" {
		i := strings.IndexAny(s, ";&?")
		if i < 0 {
			i = len(s)
		}
		b.WriteString(redactToken(s[:i]))
		if i < len(s) {
			b.WriteByte(s[i])
			i++
		}
		s = s[i:]
	}
	return b.String()
}

// redactToken hides a PIN in one attribute (or any text) however it is
// percent-escaped; text with no PIN is returned as it was.
func redactToken(tok string) string {
	d := tok
	for range 8 {
		u, err := url.PathUnescape(d)
		if err != nil || u == d {
			break
		}
		d = u
	}
	if d == tok && !pinValueRE.MatchString(tok) {
		return tok
	}
	if pinTokenRE.MatchString(d) {
		return pinTokenRE.ReplaceAllString(d, "${1}REDACTED")
	}
	return tok
}
