package ceremony

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/coldharbor/coldharbor/hsm"
	"github.com/coldharbor/coldharbor/trust"
)

// Attestations collects the transcript's attestation records, by key ID
// (the latest record of a key wins), as the content of the target
// trust.AttestationsTarget; nil when the transcript records none (keys
// without hardware). The signer publishes it with the next targets.
func Attestations(dir string) ([]byte, error) {
	entries, err := readEntries(filepath.Join(dir, trust.TranscriptFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := trust.Attestations{Format: trust.AttestationsFormat, Keys: map[string]*hsm.Attestation{}}
	for _, e := range entries {
		var a hsm.Attestation
		if len(e.KeyIDs) != 1 || e.Detail["attestation"] == nil || remarshal(e.Detail["attestation"], &a) != nil {
			continue
		}
		out.Keys[e.KeyIDs[0]] = &a
	}
	if len(out.Keys) == 0 {
		return nil, nil
	}
	return json.MarshalIndent(out, "", "  ")
}
