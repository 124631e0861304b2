package hsm

import "fmt"

// WithPKCS11Modules names the PKCS#11 libraries whose tokens List shows
// (for example /usr/lib/softhsm/libsofthsm2.so). Default: none, because
// PKCS#11 has no registry of installed modules and loading a library runs
// its code: only the ones the operator names are opened.
func WithPKCS11Modules(paths ...string) Option {
	return func(o *options) error {
		for _, p := range paths {
			if p == "" {
				return fmt.Errorf("empty PKCS#11 module path")
			}
		}
		o.pkcs11Modules = append(o.pkcs11Modules, paths...)
		return nil
	}
}
