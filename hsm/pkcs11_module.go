//go:build cgo

package hsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// Written by hand on miekg/pkcs11 because crypto11 v1.5.0 has no API for
// it: enumerating slots and tokens (crypto11 only opens the first token that
// matches one label, serial or slot), listing key objects of every type (its
// Find* calls fail on any key type it cannot wrap, and see nothing without
// logging in), and destroying objects that are not a key pair it found.
// Signing, key generation and login stay with crypto11.

// rawModule is a PKCS#11 library loaded beside crypto11. The library's
// state is per process: dlopen returns the handle crypto11 may already
// hold, and C_Initialize then answers CKR_CRYPTOKI_ALREADY_INITIALIZED. In
// that case the module belongs to crypto11 and we must not C_Finalize it,
// which would end crypto11's sessions and login. Hold p11Mu from
// loadModule to Close.
type rawModule struct {
	path  string
	ctx   *pkcs11.Ctx
	owned bool
}

func loadModule(path string) (*rawModule, error) {
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("PKCS#11 module %s cannot be loaded: not a shared library for this platform, or it exports no C_GetFunctionList", path)
	}
	m := &rawModule{path: path, ctx: c, owned: true}
	if err := c.Initialize(); err != nil {
		if !isP11(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			c.Destroy()
			return nil, fmt.Errorf("PKCS#11 module %s: C_Initialize: %w", path, err)
		}
		m.owned = false
	}
	return m, nil
}

func (m *rawModule) Close() {
	if m.owned {
		_ = m.ctx.Finalize()
	}
	m.ctx.Destroy()
}

// p11Token is one slot with a token present.
type p11Token struct {
	slot   uint
	info   pkcs11.TokenInfo
	desc   string // slot description
	vendor string // slot manufacturer
}

func (t p11Token) initialized() bool { return t.info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 }

// String names a token for messages: its label and serial.
func (t p11Token) String() string {
	if t.info.SerialNumber == "" {
		return fmt.Sprintf("%q", t.info.Label)
	}
	return fmt.Sprintf("%q (serial %s)", t.info.Label, t.info.SerialNumber)
}

func (m *rawModule) tokens() ([]p11Token, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 module %s: listing slots: %w", m.path, err)
	}
	var toks []p11Token
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			// A token pulled out between the two calls, or one the
			// module cannot read: not a reason to hide the others.
			continue
		}
		t := p11Token{slot: s, info: ti}
		t.info.Label, t.info.SerialNumber = trimP11(ti.Label), trimP11(ti.SerialNumber)
		t.info.ManufacturerID, t.info.Model = trimP11(ti.ManufacturerID), trimP11(ti.Model)
		if si, err := m.ctx.GetSlotInfo(s); err == nil {
			t.desc, t.vendor = trimP11(si.SlotDescription), trimP11(si.ManufacturerID)
		}
		toks = append(toks, t)
	}
	return toks, nil
}

// trimP11 removes the padding of PKCS#11's fixed-width strings: blanks by
// the standard, NULs from some modules.
func trimP11(s string) string { return strings.TrimRight(s, " \x00") }

// findToken picks the one token the URI's attributes select. Every given
// attribute must match (RFC 7512 §2.3); with none given, the module must
// hold exactly one initialised token.
func (m *rawModule) findToken(s p11Spec) (p11Token, error) {
	if err := m.matchLibrary(s); err != nil {
		return p11Token{}, err
	}
	toks, err := m.tokens()
	if err != nil {
		return p11Token{}, err
	}
	var hits []p11Token
	for _, t := range toks {
		if s.slotID == nil && !t.initialized() {
			// SoftHSM2 always shows a free, uninitialised token.
			continue
		}
		if t.matches(s) {
			hits = append(hits, t)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return p11Token{}, fmt.Errorf("%s: %w in %s; %s", s.uri, ErrTokenNotFound, m.path, present(toks))
	}
	names := make([]string, len(hits))
	for i, t := range hits {
		names[i] = t.String()
	}
	return p11Token{}, fmt.Errorf("%s: %d tokens match (%s): add serial= to the URI", s.uri, len(hits), strings.Join(names, ", "))
}

func present(toks []p11Token) string {
	var names []string
	for _, t := range toks {
		if t.initialized() {
			names = append(names, t.String())
		}
	}
	if len(names) == 0 {
		return "the module shows no initialised token"
	}
	return "tokens present: " + strings.Join(names, ", ")
}

func (t p11Token) matches(s p11Spec) bool {
	if s.slotID != nil && *s.slotID != t.slot {
		return false
	}
	for k, v := range s.token {
		var have string
		switch k {
		case "token":
			have = t.info.Label
		case "serial":
			have = t.info.SerialNumber
		case "manufacturer":
			have = t.info.ManufacturerID
		case "model":
			have = t.info.Model
		case "slot-description":
			have = t.desc
		case "slot-manufacturer":
			have = t.vendor
		default:
			continue // slot-id above, library-* in matchLibrary
		}
		if have != v {
			return false
		}
	}
	return true
}

func (m *rawModule) matchLibrary(s p11Spec) error {
	want := map[string]string{}
	for k, v := range s.token {
		if strings.HasPrefix(k, "library-") {
			want[k] = v
		}
	}
	if len(want) == 0 {
		return nil
	}
	info, err := m.ctx.GetInfo()
	if err != nil {
		return fmt.Errorf("PKCS#11 module %s: C_GetInfo: %w", m.path, err)
	}
	have := map[string]string{
		"library-manufacturer": trimP11(info.ManufacturerID),
		"library-description":  trimP11(info.LibraryDescription),
		"library-version":      fmt.Sprintf("%d.%d", info.LibraryVersion.Major, info.LibraryVersion.Minor),
	}
	for k, v := range want {
		if have[k] != v {
			return fmt.Errorf("%s: %w: module %s has %s=%q", s.uri, ErrTokenNotFound, m.path, k, have[k])
		}
	}
	return nil
}

// p11Object is a key or certificate object on a token.
type p11Object struct {
	handle pkcs11.ObjectHandle
	class  uint
	label  string
	id     []byte
}

func (o p11Object) String() string {
	var kind string
	switch o.class {
	case pkcs11.CKO_PRIVATE_KEY:
		kind = "private key"
	case pkcs11.CKO_PUBLIC_KEY:
		kind = "public key"
	case pkcs11.CKO_CERTIFICATE:
		kind = "certificate"
	case pkcs11.CKO_SECRET_KEY:
		kind = "secret key"
	default:
		kind = fmt.Sprintf("object of class %#x", o.class)
	}
	return fmt.Sprintf("%s %s", kind, objectRef(o.label, o.id))
}

// objectRef renders a key's path attributes as they go in a URI, every id
// byte percent-encoded as RFC 7512 §2.3 writes it.
func objectRef(label string, id []byte) string {
	var parts []string
	if label != "" {
		parts = append(parts, "object="+p11Escape(label, ""))
	}
	if len(id) > 0 {
		var b strings.Builder
		for _, c := range id {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		parts = append(parts, "id="+b.String())
	}
	if len(parts) == 0 {
		return "(no label, no id)"
	}
	return strings.Join(parts, ";")
}

// session runs f in a fresh session on the token. Sessions of one process
// share the token's login state (PKCS#11 v2.40 §5.6), so while crypto11
// holds a logged-in session this one sees private objects too.
func (m *rawModule) session(t p11Token, rw bool, f func(pkcs11.SessionHandle) error) error {
	flags := uint(pkcs11.CKF_SERIAL_SESSION)
	if rw {
		flags |= pkcs11.CKF_RW_SESSION
	}
	sh, err := m.ctx.OpenSession(t.slot, flags)
	if err != nil {
		return fmt.Errorf("opening a session on token %s: %w", t, err)
	}
	defer m.ctx.CloseSession(sh)
	return f(sh)
}

// objects returns the objects matching tmpl that the session can see.
func (m *rawModule) objects(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) ([]p11Object, error) {
	if err := m.ctx.FindObjectsInit(sh, tmpl); err != nil {
		return nil, fmt.Errorf("searching the token: %w", err)
	}
	var handles []pkcs11.ObjectHandle
	for {
		hs, _, err := m.ctx.FindObjects(sh, 64)
		if err != nil {
			_ = m.ctx.FindObjectsFinal(sh)
			return nil, fmt.Errorf("searching the token: %w", err)
		}
		if len(hs) == 0 {
			break
		}
		handles = append(handles, hs...)
	}
	if err := m.ctx.FindObjectsFinal(sh); err != nil {
		return nil, fmt.Errorf("searching the token: %w", err)
	}
	objs := make([]p11Object, 0, len(handles))
	for _, h := range handles {
		attrs, err := m.ctx.GetAttributeValue(sh, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
			pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		})
		if err != nil {
			// Deleted by another session since the search, or an
			// object without these attributes: no key to show.
			continue
		}
		objs = append(objs, p11Object{handle: h, class: ulong(attrs[0].Value), label: string(attrs[1].Value), id: attrs[2].Value})
	}
	return objs, nil
}

// keyObjects lists the token's private and public keys, in a stable order.
func (m *rawModule) keyObjects(sh pkcs11.SessionHandle) ([]p11Object, error) {
	var all []p11Object
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
		objs, err := m.objects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)})
		if err != nil {
			return nil, err
		}
		all = append(all, objs...)
	}
	slices.SortStableFunc(all, func(a, b p11Object) int {
		return strings.Compare(objectRef(a.label, a.id), objectRef(b.label, b.id))
	})
	return all, nil
}

// keyRefs lists each key pair once as "object=L;id=%xx", as a URI names it.
func keyRefs(objs []p11Object) []string {
	refs := []string{}
	for _, o := range objs {
		r := objectRef(o.label, o.id)
		if !slices.Contains(refs, r) {
			refs = append(refs, r)
		}
	}
	return refs
}

// ulong decodes a CK_ULONG attribute as the module wrote it: native byte
// order, native width.
func ulong(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return ^uint(0)
}

func isP11(err error, code uint) bool {
	var pe pkcs11.Error
	return errors.As(err, &pe) && uint(pe) == code
}
