package hsm

import (
	"context"
	"errors"
	"fmt"
)

// Option configures Open and Generate.
type Option func(*options) error

type options struct {
	secret SecretFunc
	force  bool
	// Hardware key generation (yubikey:): PIV PIN and touch policies.
	pinPolicy, touchPolicy string
	// notify tells the holder what the device waits for (a touch).
	notify func(string)
	// pkcs11Modules are the PKCS#11 libraries List opens (WithPKCS11Modules).
	pkcs11Modules []string
}

// WithSecrets sets where passwords and PINs come from. Default: none, so a
// key that needs a secret fails with ErrNoSecret.
func WithSecrets(f SecretFunc) Option {
	return func(o *options) error { o.secret = f; return nil }
}

// WithForce lets Generate replace an existing key. Default: false.
func WithForce(force bool) Option {
	return func(o *options) error { o.force = force; return nil }
}

// WithNotify sets where messages for the key's holder go ("touch the
// YubiKey"). Default: nowhere.
func WithNotify(f func(string)) Option {
	return func(o *options) error { o.notify = f; return nil }
}

// WithPolicies sets the PIN and touch policies of a key generated on a
// YubiKey ("never", "once", "always"; touch also "cached"). Default: PIN
// once, touch always, so every signature needs a person present.
func WithPolicies(pin, touch string) Option {
	return func(o *options) error { o.pinPolicy, o.touchPolicy = pin, touch; return nil }
}

func prepare(uri string, opts []Option) (URI, *options, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return URI{}, nil, err
	}
	o, err := makeOptions(opts)
	return u, o, err
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// ErrNotSupported is returned for a scheme whose backend is not built yet.
var ErrNotSupported = errors.New("not supported yet")

// Open returns the key a URI names: with a Signer when its private half is
// usable here, public-only for a public-key PEM. The caller must call Close.
func Open(ctx context.Context, uri string, opts ...Option) (*Key, error) {
	u, o, err := prepare(uri, opts)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case SchemeFile:
		return openFile(ctx, u, o.secret)
	case SchemeYubiKey:
		return openYubiKey(ctx, u, o)
	case SchemePKCS11:
		return openPKCS11(ctx, u, o)
	}
	return nil, unsupported(u)
}

// Generate makes a new key where the URI says and returns it, able to sign.
func Generate(ctx context.Context, uri string, opts ...Option) (*Key, error) {
	u, o, err := prepare(uri, opts)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case SchemeFile:
		return generateFile(ctx, u, o.secret, o.force)
	case SchemeYubiKey:
		return generateYubiKey(ctx, u, o)
	case SchemePKCS11:
		return generatePKCS11(ctx, u, o)
	}
	return nil, unsupported(u)
}

func unsupported(u URI) error {
	return fmt.Errorf("%s: %s keys are %w in this build", u, u.Scheme, ErrNotSupported)
}

// Device is a hardware key holder that `keys list` shows.
type Device struct {
	Kind     string   `json:"kind"` // "yubikey" or "pkcs11"
	Name     string   `json:"name"` // reader name or token label
	Serial   string   `json:"serial"`
	Firmware string   `json:"firmware,omitempty"`
	Slots    []string `json:"slots"` // occupied key slots or objects
	URI      string   `json:"uri"`   // how to name it, e.g. yubikey:serial=N
}

// List returns the YubiKeys on this machine's PC/SC readers and the tokens
// of the PKCS#11 modules given (WithPKCS11Modules).
func List(ctx context.Context, opts ...Option) ([]Device, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	yk, err := listYubiKeys(ctx, o)
	if err != nil {
		return nil, err
	}
	p11, err := listPKCS11(ctx, o)
	if err != nil {
		return nil, err
	}
	return append(yk, p11...), nil
}
