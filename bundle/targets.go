package bundle

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/trust"
)

// What a bundle means for the TUF targets and the cosign signatures: the
// exporter writes it, the signer rebuilds and signs it, the importer
// checks it.

// ApplyIndex returns base's next version with idx's images added or
// replaced and its removals removed. bundleSHA, when set, is recorded in
// each added target's custom data (the signer binds its approval so).
func ApplyIndex(base *metadata.Metadata[metadata.TargetsType], idx *Index, now time.Time, bundleSHA string) (*metadata.Metadata[metadata.TargetsType], error) {
	next := trust.NextTargets(base, now, trust.DefaultExpiry()[trust.Targets])
	for _, img := range idx.Images {
		h, err := v1.NewHash(img.Digest)
		if err != nil {
			return nil, err
		}
		hb, err := hexBytes(h.Hex)
		if err != nil {
			return nil, err
		}
		custom, err := json.Marshal(TargetCustom{MediaType: img.MediaType, Source: img.Source, Platforms: img.Platforms, Bundle: bundleSHA, Attachments: img.Attachments, Upstream: img.Upstream})
		if err != nil {
			return nil, err
		}
		rm := json.RawMessage(custom)
		next.Signed.Targets[img.Name] = &metadata.TargetFiles{Length: img.Size, Hashes: metadata.Hashes{"sha256": hb}, Custom: &rm, Path: img.Name}
	}
	for _, r := range idx.Removals {
		delete(next.Signed.Targets, r)
	}
	return next, nil
}

// Payload is the cosign simple-signing payload for img pushed under dest:
// {"critical":{"identity":{"docker-reference":DEST/REPO},"image":{"docker-manifest-digest":…},…}}.
func Payload(dest string, img Image) ([]byte, error) {
	return DigestPayload(dest, img.Name, img.Digest)
}

// DigestPayload is the cosign payload for the manifest digest in the
// repository of target name under dest: an image's or one of its children's.
func DigestPayload(dest, target, digest string) ([]byte, error) {
	repoName, _, _ := strings.Cut(target, ":")
	d, err := name.NewDigest(strings.TrimSuffix(dest, "/")+"/"+repoName+"@"+digest, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("image %s under %s: %w", target, dest, err)
	}
	return payload.Cosign{Image: d}.MarshalJSON()
}

// TargetFile is the target entry of a file published as a target (the
// cosign.pub target): its length and sha256.
func TargetFile(name string, data []byte) *metadata.TargetFiles {
	return trust.FileTarget(name, data)
}
