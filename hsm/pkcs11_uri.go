package hsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Errors of the pkcs11: backend. Where the module reported a PKCS#11 return
// value, the error also wraps it (a pkcs11.Error), so both tests work. A
// wrong or blocked PIN is a *PINError or ErrPINBlocked, as for YubiKeys
// (CKR_PIN_INCORRECT and CKR_PIN_LEN_RANGE; CKR_PIN_LOCKED and
// CKF_USER_PIN_LOCKED).
var (
	// ErrTokenNotFound: no token of the module matches the URI.
	ErrTokenNotFound = errors.New("PKCS#11 token not found")
	// ErrObjectNotFound: no private key on the token matches object/id.
	ErrObjectNotFound = errors.New("key not found on the token")
	// ErrObjectAmbiguous: several objects match where one is needed.
	ErrObjectAmbiguous = errors.New("more than one key matches")
)

// maxPINFile bounds a pin-source file: PKCS#11 PINs are a few dozen bytes,
// so anything near this is the wrong file.
const maxPINFile = 4 << 10

// p11Spec is a pkcs11: URI checked against RFC 7512 and resolved.
type p11Spec struct {
	uri URI
	// module is module-path made absolute with symlinks resolved: dlopen
	// of a bare name searches LD_LIBRARY_PATH rather than the file we
	// checked, and crypto11 shares one initialised module per path string,
	// so two spellings of one library would initialise it twice.
	module string
	// token holds the attributes that select the token (RFC 7512 §2.3:
	// token, serial, manufacturer, model, slot-*, library-*).
	token map[string]string
	// slotID is slot-id parsed, when given.
	slotID *uint
	// label (object) and id (CKA_ID bytes) select the key; empty when absent.
	label string
	id    []byte
}

// parsePKCS11 validates a pkcs11: URI. Unknown attributes are refused
// rather than ignored, so a typo ("label=" for "object=") cannot silently
// select another key.
func parsePKCS11(u URI) (p11Spec, error) {
	s := p11Spec{uri: u, token: map[string]string{}}
	for k, v := range u.Attrs {
		switch k {
		case "object":
			if v == "" {
				return s, fmt.Errorf("%s: object= is empty", u)
			}
			s.label = v
		case "id":
			if v == "" {
				return s, fmt.Errorf("%s: id= is empty", u)
			}
			s.id = []byte(v)
		case "type":
			// p11tool prints type=private/public/cert; only a private
			// key can sign.
			if v != "private" {
				return s, fmt.Errorf("%s: type=%s names no private key; use type=private or leave type out", u, v)
			}
		case "token", "serial", "manufacturer", "model",
			"slot-id", "slot-description", "slot-manufacturer",
			"library-manufacturer", "library-description", "library-version":
			s.token[k] = v
		default:
			return s, fmt.Errorf("%s: unknown attribute %q (pkcs11: takes token, serial, manufacturer, model, slot-id, object, id, type)", u, k)
		}
	}
	if v, ok := s.token["slot-id"]; ok {
		n, err := strconv.ParseUint(v, 10, 0)
		if err != nil {
			return s, fmt.Errorf("%s: slot-id=%q is not a decimal number", u, v)
		}
		id := uint(n)
		s.slotID = &id
	}
	for k := range u.Query {
		switch k {
		case "module-path", "pin-value", "pin-source":
		case "module-name":
			return s, fmt.Errorf("%s: module-name is not supported: give the library's full path with module-path=", u)
		default:
			return s, fmt.Errorf("%s: unknown query attribute %q (pkcs11: takes module-path, pin-value, pin-source)", u, k)
		}
	}
	if _, v := u.Query["pin-value"]; v {
		if _, src := u.Query["pin-source"]; src {
			return s, fmt.Errorf("%s: give pin-value or pin-source, not both", u)
		}
	}
	if u.Query["module-path"] == "" {
		return s, fmt.Errorf("%s: module-path is missing: name the token's PKCS#11 library, e.g. ?module-path=/usr/lib/softhsm/libsofthsm2.so", u)
	}
	mod, err := resolveModule(u.Query["module-path"])
	if err != nil {
		return s, fmt.Errorf("%s: %w", u, err)
	}
	s.module = mod
	return s, nil
}

// resolveModule checks a module path and returns it absolute with symlinks
// resolved (see p11Spec.module).
func resolveModule(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("PKCS#11 module %s: %w", p, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("PKCS#11 module %s not found: %w", p, err)
	}
	if err != nil {
		return "", fmt.Errorf("PKCS#11 module %s: %w", p, err)
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return "", fmt.Errorf("PKCS#11 module %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("PKCS#11 module %s is not a regular file", p)
	}
	return resolved, nil
}

// p11Escape percent-encodes an attribute value for a pkcs11: URI, keeping
// unreserved characters and those in keep ("/" is allowed in query values,
// RFC 7512 §2.3, and keeps module paths readable).
func p11Escape(v, keep string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~"+keep, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// pin returns the user PIN: pin-value, else the file pin-source names, else
// the SecretFunc (COLDHARBOR_PIN or a prompt).
func (s p11Spec) pin(ctx context.Context, o *options) (string, error) {
	if v, ok := s.uri.Query["pin-value"]; ok {
		return v, nil
	}
	if src, ok := s.uri.Query["pin-source"]; ok {
		return readPINSource(src)
	}
	if o.secret == nil {
		return "", fmt.Errorf("%w: the PIN for %s is needed; add pin-source=FILE to the URI or set COLDHARBOR_PIN", ErrNoSecret, s.uri)
	}
	b, err := o.secret(ctx, SecretRequest{Kind: PIN, Key: s.uri})
	if err != nil {
		return "", err
	}
	pin := string(b)
	clear(b)
	return pin, nil
}

// readPINSource reads the PIN from pin-source: "file:PATH", "file:///PATH"
// or a plain path (RFC 7512 §2.4 leaves the form to the application). A
// "|command" source is refused: running programs named in a key URI is a
// door we keep shut.
func readPINSource(src string) (string, error) {
	path := src
	switch {
	case strings.HasPrefix(src, "|"):
		return "", fmt.Errorf("pin-source %q runs a command, which coldharbor does not do: put the PIN in a file only this user can read and give pin-source=file:PATH", src)
	case strings.HasPrefix(src, "file:"):
		path = strings.TrimPrefix(src, "file:")
		if rest, ok := strings.CutPrefix(path, "//"); ok {
			host, p, _ := strings.Cut(rest, "/")
			if host != "" && host != "localhost" {
				return "", fmt.Errorf("pin-source %q: a file on host %q cannot be read", src, host)
			}
			path = "/" + p
		}
	case schemeRE.MatchString(src) && !filepath.IsAbs(src):
		return "", fmt.Errorf("pin-source %q: only file: sources are supported", src)
	}
	if path == "" {
		return "", fmt.Errorf("pin-source %q names no file", src)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading PIN: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("reading PIN: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("pin-source %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPINFile+1))
	if err != nil {
		return "", fmt.Errorf("reading PIN from %s: %w", path, err)
	}
	defer clear(b)
	if len(b) > maxPINFile {
		return "", fmt.Errorf("pin-source %s is larger than %d bytes: not a PIN file", path, maxPINFile)
	}
	// Editors and `echo` end files with a newline; a PIN never does.
	pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pin == "" {
		return "", fmt.Errorf("pin-source %s is empty", path)
	}
	return pin, nil
}
