package testregistry

// MakeCerts returns a fresh CA certificate, and a server certificate and key
// for 127.0.0.1 and localhost signed by it, all PEM: what the registry
// gets, for other loopback servers under test (the serve gate).
func MakeCerts() (caPEM, certPEM, keyPEM []byte, err error) { return makeCerts() }
