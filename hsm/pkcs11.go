//go:build cgo

package hsm

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// The pkcs11: backend: RFC 7512 URIs, keys on any PKCS#11 token (SoftHSM2,
// network HSMs, a YubiKey through ykcs11). crypto11 logs in, generates and
// signs; pkcs11_module.go does what crypto11 cannot (finding the token,
// listing and destroying objects).
//
// Signing hashes in NewSigner and hands crypto11 the digest, which it signs
// with CKM_ECDSA: SoftHSM2 has no CKM_ECDSA_SHA256, and raw ECDSA over a
// digest is what every token offers.

const (
	// pkcs11Sessions caps crypto11's session pool: one session it keeps
	// logged in plus one to sign with. TUF signing is sequential, and
	// network HSMs limit sessions per client; a concurrent Sign waits.
	pkcs11Sessions = 2
	// newKeyIDLen is the CKA_ID length of generated keys when the URI
	// gives none: crypto11 pairs the halves of a key by CKA_ID, so it must
	// be set and unique on the token.
	newKeyIDLen = 16
)

// p11Mu serialises everything this package does to a PKCS#11 module's
// process-wide state: C_Initialize and C_Finalize (crypto11 calls them in
// Configure and Close, rawModule in loadModule and Close) and the raw
// look-ups made while a rawModule is loaded. A module has one state per
// process whoever loads it, and SoftHSM2 crashes (SIGSEGV) when two threads
// initialise it at once or one finalises it while another initialises
// (TestPKCS11KeysOpenTogether). It guards the C libraries' state, not ours,
// which is why it is the one package-level variable of the backend; signing
// does not take it.
var p11Mu sync.Mutex

func openPKCS11(ctx context.Context, u URI, o *options) (*Key, error) {
	s, err := parsePKCS11(u)
	if err != nil {
		return nil, err
	}
	if s.label == "" && len(s.id) == 0 {
		return nil, fmt.Errorf("%s: name the key with object=LABEL or id=%%XX: %w", u, ErrObjectAmbiguous)
	}
	tok, c, err := loginPKCS11(ctx, s, o)
	if err != nil {
		return nil, err
	}
	p11Mu.Lock()
	defer p11Mu.Unlock()
	key, err := findKeyPair(c, s, tok)
	if err != nil {
		c.Close()
		return nil, err
	}
	return key, nil
}

// generatePKCS11 makes an EC P-256 key pair on the token, named by the URI's
// object and/or id. An existing object with that label or id is destroyed
// only with force: a second key under one name would make the URI ambiguous.
func generatePKCS11(ctx context.Context, u URI, o *options) (*Key, error) {
	s, err := parsePKCS11(u)
	if err != nil {
		return nil, err
	}
	if s.label == "" && len(s.id) == 0 {
		return nil, fmt.Errorf("%s: name the new key with object=LABEL (and, if you wish, id=%%XX)", u)
	}
	tok, c, err := loginPKCS11(ctx, s, o)
	if err != nil {
		return nil, err
	}
	p11Mu.Lock()
	defer p11Mu.Unlock()
	key, err := generateOnToken(c, s, tok, o.force)
	if err != nil {
		c.Close()
		return nil, err
	}
	return key, nil
}

func generateOnToken(c *crypto11.Context, s p11Spec, tok p11Token, force bool) (*Key, error) {
	if err := clearName(s, tok, force); err != nil {
		return nil, err
	}
	id := s.id
	if len(id) == 0 {
		id = make([]byte, newKeyIDLen)
		if _, err := rand.Read(id); err != nil {
			return nil, fmt.Errorf("choosing a key id: %w", err)
		}
	}
	pub, err := crypto11.NewAttributeSetWithID(id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.uri, err)
	}
	priv := pub.Copy()
	if s.label != "" {
		_ = pub.Set(crypto11.CkaLabel, s.label) // Set fails only for values of unknown Go types
		_ = priv.Set(crypto11.CkaLabel, s.label)
	}
	// Tokens differ in their defaults: state both, so the public half can
	// be listed without the PIN and the private half never can.
	_ = pub.Set(crypto11.CkaPrivate, false)
	_ = priv.Set(crypto11.CkaPrivate, true)
	gen, err := c.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256())
	if err != nil {
		return nil, fmt.Errorf("%s: generating an EC P-256 key on token %s: %w", s.uri, tok, err)
	}
	signer, err := NewSigner(gen)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.uri, err)
	}
	u := s.uri
	u.Attrs = maps.Clone(u.Attrs)
	u.Attrs["id"] = string(id)
	return p11Key(u, c, signer), nil
}

// clearName refuses to generate over an object that has the new key's label
// or id, or destroys such objects when force is set.
func clearName(s p11Spec, tok p11Token, force bool) error {
	m, err := loadModule(s.module)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.session(tok, true, func(sh pkcs11.SessionHandle) error {
		var found []p11Object
		seen := map[pkcs11.ObjectHandle]bool{}
		for _, tmpl := range nameTemplates(s) {
			objs, err := m.objects(sh, tmpl)
			if err != nil {
				return err
			}
			for _, ob := range objs {
				if !seen[ob.handle] {
					seen[ob.handle] = true
					found = append(found, ob)
				}
			}
		}
		if len(found) == 0 {
			return nil
		}
		names := make([]string, len(found))
		for i, ob := range found {
			names[i] = ob.String()
		}
		if !force {
			return fmt.Errorf("%s: token %s holds %s: %w (replacing destroys it)", s.uri, tok, strings.Join(names, ", "), ErrKeyExists)
		}
		for i, ob := range found {
			if err := m.ctx.DestroyObject(sh, ob.handle); err != nil {
				return fmt.Errorf("%s: destroying %s on token %s: %w", s.uri, names[i], tok, err)
			}
		}
		return nil
	})
}

// nameTemplates searches by label and by id separately: an object sharing
// either with a new key would pair with it or make its URI ambiguous.
func nameTemplates(s p11Spec) [][]*pkcs11.Attribute {
	var ts [][]*pkcs11.Attribute
	if s.label != "" {
		ts = append(ts, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, s.label)})
	}
	if len(s.id) > 0 {
		ts = append(ts, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, s.id)})
	}
	return ts
}

// loginPKCS11 finds the token, gets the PIN and logs in through crypto11.
// The caller must Close the context with p11Mu held.
func loginPKCS11(ctx context.Context, s p11Spec, o *options) (p11Token, *crypto11.Context, error) {
	if err := ctx.Err(); err != nil {
		return p11Token{}, nil, err
	}
	tok, err := preflight(s)
	if err != nil {
		return p11Token{}, nil, err
	}
	var pin string
	// A token with a PIN pad (protected authentication path) asks for
	// the PIN itself; one without login needs none. The PIN is read
	// without p11Mu held: a prompt waits for a person.
	f := tok.info.Flags
	if f&pkcs11.CKF_LOGIN_REQUIRED != 0 && f&pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH == 0 {
		if pin, err = s.pin(ctx, o); err != nil {
			return p11Token{}, nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return p11Token{}, nil, err
	}
	c, err := configurePKCS11(s, tok, pin)
	if err != nil {
		return p11Token{}, nil, err
	}
	return tok, c, nil
}

// preflight finds the token and refuses early what login would refuse
// less clearly.
func preflight(s p11Spec) (p11Token, error) {
	p11Mu.Lock()
	defer p11Mu.Unlock()
	m, err := loadModule(s.module)
	if err != nil {
		return p11Token{}, fmt.Errorf("%s: %w", s.uri, err)
	}
	defer m.Close()
	tok, err := m.findToken(s)
	if err != nil {
		return p11Token{}, err
	}
	f := tok.info.Flags
	switch {
	case !tok.initialized():
		return p11Token{}, fmt.Errorf("%s: the token in slot %d is not initialised", s.uri, tok.slot)
	case f&pkcs11.CKF_USER_PIN_LOCKED != 0:
		return p11Token{}, fmt.Errorf("%s: token %s: %w; the security officer must unblock it", s.uri, tok, ErrPINBlocked)
	case f&pkcs11.CKF_LOGIN_REQUIRED != 0 && f&pkcs11.CKF_USER_PIN_INITIALIZED == 0:
		return p11Token{}, fmt.Errorf("%s: token %s has no user PIN yet; the security officer must set one", s.uri, tok)
	}
	return tok, nil
}

// configurePKCS11 opens a crypto11 context on the token's slot and logs in.
// The slot comes from preflight: crypto11 alone would take the first token
// with the label, and could not say which labels there are when none has.
//
// Login is per token and process (PKCS#11 v2.40 §5.6): while another key of
// this process keeps the token logged in, C_Login answers
// CKR_USER_ALREADY_LOGGED_IN without checking the PIN, and crypto11 accepts
// that. Nothing is gained (this process can sign already), but a wrong PIN
// goes unnoticed until the token is opened alone.
func configurePKCS11(s p11Spec, tok p11Token, pin string) (*crypto11.Context, error) {
	slot := int(tok.slot)
	cfg := &crypto11.Config{
		Path:              s.module,
		SlotNumber:        &slot,
		Pin:               pin,
		MaxSessions:       pkcs11Sessions,
		LoginNotSupported: tok.info.Flags&pkcs11.CKF_LOGIN_REQUIRED == 0,
	}
	p11Mu.Lock()
	defer p11Mu.Unlock()
	c, err := crypto11.Configure(cfg)
	if err != nil {
		return nil, loginError(s, tok, err)
	}
	return c, nil
}

func loginError(s p11Spec, tok p11Token, err error) error {
	// Report the module's own code, not crypto11's wording around it.
	var code pkcs11.Error
	if errors.As(err, &code) {
		err = code
	}
	switch {
	case isP11(err, pkcs11.CKR_PIN_INCORRECT), isP11(err, pkcs11.CKR_PIN_LEN_RANGE):
		return fmt.Errorf("%s: token %s: %w (%w)", s.uri, tok, &PINError{Retries: -1}, err)
	case isP11(err, pkcs11.CKR_PIN_LOCKED):
		return fmt.Errorf("%s: token %s: %w; the security officer must unblock it (%w)", s.uri, tok, ErrPINBlocked, err)
	case isP11(err, pkcs11.CKR_PIN_EXPIRED):
		return fmt.Errorf("%s: the PIN of token %s has expired; change it with the token's own tools: %w", s.uri, tok, err)
	case isP11(err, pkcs11.CKR_TOKEN_NOT_PRESENT), isP11(err, pkcs11.CKR_DEVICE_REMOVED):
		return fmt.Errorf("%s: token %s was removed: %w", s.uri, tok, err)
	}
	return fmt.Errorf("%s: opening token %s: %w", s.uri, tok, err)
}

// findKeyPair finds the one private key the URI names and its public half.
func findKeyPair(c *crypto11.Context, s p11Spec, tok p11Token) (*Key, error) {
	label := []byte(s.label)
	privs, err := c.FindPrivateKeys(s.id, label)
	if err != nil {
		return nil, findError(s, tok, err)
	}
	switch len(privs) {
	case 0:
		return nil, fmt.Errorf("%s: %w: token %s has no private key with %s; %s", s.uri, ErrObjectNotFound, tok, objectRef(s.label, s.id), keysPresent(s, tok))
	case 1:
	default:
		refs := make([]string, len(privs))
		for i, p := range privs {
			refs[i] = "?"
			if a, err := c.GetAttributes(p, []crypto11.AttributeType{crypto11.CkaLabel, crypto11.CkaId}); err == nil {
				refs[i] = objectRef(string(a[crypto11.CkaLabel].Value), a[crypto11.CkaId].Value)
			}
		}
		return nil, fmt.Errorf("%s: %w: %d private keys on token %s match (%s); name one with id=", s.uri, ErrObjectAmbiguous, len(privs), tok, strings.Join(refs, ", "))
	}
	pairs, err := c.FindKeyPairs(s.id, label)
	if err != nil {
		return nil, findError(s, tok, err)
	}
	if len(pairs) != 1 {
		// crypto11 reads the public key from a public-key object or a
		// certificate with the private key's CKA_ID (and label).
		return nil, fmt.Errorf("%s: token %s has the private key but no public key object or certificate with its CKA_ID, so its public key cannot be read", s.uri, tok)
	}
	signer, err := NewSigner(pairs[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.uri, err)
	}
	return p11Key(s.uri, c, signer), nil
}

// findError gives keys crypto11 cannot wrap (Ed25519, curves it does not
// know) the package's error; crypto11 exports no sentinel for them, only
// messages that say "unsupported".
func findError(s p11Spec, tok p11Token, err error) error {
	if strings.Contains(err.Error(), "unsupported") {
		return fmt.Errorf("%s: %w (token %s: %v)", s.uri, ErrUnsupportedKey, tok, err)
	}
	return fmt.Errorf("%s: searching token %s: %w", s.uri, tok, err)
}

// keysPresent names the private keys on the token, to help fix a URI. It is
// best effort: an error only leaves the list out.
func keysPresent(s p11Spec, tok p11Token) string {
	m, err := loadModule(s.module)
	if err != nil {
		return "its keys cannot be listed"
	}
	defer m.Close()
	var refs []string
	err = m.session(tok, false, func(sh pkcs11.SessionHandle) error {
		objs, err := m.objects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)})
		refs = keyRefs(objs)
		return err
	})
	switch {
	case err != nil:
		return "its keys cannot be listed"
	case len(refs) == 0:
		return "it holds no private key"
	}
	return "keys present: " + strings.Join(refs, ", ")
}

// p11Key wraps a logged-in context and its key. Close is idempotent because
// crypto11 is not: a second Context.Close miscounts its shared module
// reference and panics or finalises the module under other contexts.
func p11Key(u URI, c *crypto11.Context, s Signer) *Key {
	var once sync.Once
	var cerr error
	return &Key{URI: u, Public: s.Public(), Signer: s, Close: func() error {
		once.Do(func() {
			p11Mu.Lock()
			defer p11Mu.Unlock()
			if err := c.Close(); err != nil {
				cerr = fmt.Errorf("closing the PKCS#11 session of %s: %w", u, err)
			}
		})
		return cerr
	}}
}

// listPKCS11 shows the initialised tokens of the modules WithPKCS11Modules
// names, and the key pairs each holds. It does not log in, so it lists the
// objects visible without a PIN: the public halves of the key pairs.
func listPKCS11(ctx context.Context, o *options) ([]Device, error) {
	var devs []Device
	for _, p := range o.pkcs11Modules {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := listModule(p)
		if err != nil {
			return nil, err
		}
		devs = append(devs, d...)
	}
	return devs, nil
}

func listModule(path string) ([]Device, error) {
	mod, err := resolveModule(path)
	if err != nil {
		return nil, err
	}
	// The URIs keep the path as given (made absolute), not the resolved
	// one: a distribution's symlink outlives the versioned file it names.
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 module %s: %w", path, err)
	}
	p11Mu.Lock()
	defer p11Mu.Unlock()
	m, err := loadModule(mod)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	toks, err := m.tokens()
	if err != nil {
		return nil, err
	}
	labels := map[string]int{}
	for _, t := range toks {
		labels[t.info.Label]++
	}
	var devs []Device
	for _, t := range toks {
		if !t.initialized() {
			continue
		}
		var refs []string
		err := m.session(t, false, func(sh pkcs11.SessionHandle) error {
			objs, err := m.keyObjects(sh)
			refs = keyRefs(objs)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("PKCS#11 module %s: token %s: %w", path, t, err)
		}
		uri := "pkcs11:token=" + p11Escape(t.info.Label, "")
		if labels[t.info.Label] > 1 && t.info.SerialNumber != "" {
			uri += ";serial=" + p11Escape(t.info.SerialNumber, "")
		}
		uri += "?module-path=" + p11Escape(abs, "/")
		fw := t.info.FirmwareVersion
		devs = append(devs, Device{
			Kind:     "pkcs11",
			Name:     t.info.Label,
			Serial:   t.info.SerialNumber,
			Firmware: strings.TrimSpace(fmt.Sprintf("%s %s, firmware %d.%d", t.info.ManufacturerID, t.info.Model, fw.Major, fw.Minor)),
			Slots:    refs,
			URI:      uri,
		})
	}
	return devs, nil
}
