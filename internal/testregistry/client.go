package testregistry

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/coldharbor/coldharbor/internal/atomicfile"
)

// WriteClientConfig writes, under dir, what a site's machines have for
// several registries: one Docker config (DOCKER_CONFIG) with credentials for
// every host name given (a registry may answer under more than one, e.g.
// through a relay) and one CA bundle (SSL_CERT_FILE) trusting all of them.
func WriteClientConfig(dir string, hosts map[string]*Registry) (dockerConfigDir, caFile string, err error) {
	auths := map[string]any{}
	cas := map[string]bool{}
	for host, r := range hosts {
		auths[host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Password))}
		cas[r.CAFile] = true
	}
	files := make([]string, 0, len(cas))
	for f := range cas {
		files = append(files, f)
	}
	sort.Strings(files)
	var bundle []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", "", fmt.Errorf("read CA: %w", err)
		}
		bundle = append(bundle, b...)
	}
	cfg, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return "", "", err
	}
	dockerConfigDir = filepath.Join(dir, "docker")
	if err := os.MkdirAll(dockerConfigDir, 0o700); err != nil {
		return "", "", fmt.Errorf("docker config: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dockerConfigDir, "config.json"), cfg, 0o600); err != nil {
		return "", "", err
	}
	caFile = filepath.Join(dir, "ca.pem")
	return dockerConfigDir, caFile, atomicfile.Write(caFile, bundle, 0o644)
}
