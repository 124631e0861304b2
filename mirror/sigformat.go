package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Signature formats of import's --signature-format.
const (
	// SignatureFormatAuto asks the target what it shows as signed.
	SignatureFormatAuto = "auto"
	// SignatureFormatLegacy is cosign 2.x's sha256-<hex>.sig tag: shown as
	// signed by every Harbor version, found by cosign v2 and v3.
	SignatureFormatLegacy = "legacy"
	// SignatureFormatBundle is cosign 3.x's sigstore bundle as an OCI 1.1
	// referrer (the referrers tag on registries without the API).
	SignatureFormatBundle = "bundle"
)

// SignatureDecision records which signature format an import wrote and why.
type SignatureDecision struct {
	Requested string `json:"requested"`
	Chosen    string `json:"chosen"`
	// Target is what the registry said it is: "harbor v2.14.4-…", "harbor
	// (version not shown to these credentials)", "registry with referrers
	// API", "registry without referrers API", or "unknown".
	Target string `json:"target"`
	Reason string `json:"reason"`
	// Bundles counts the digests our signature goes to as sigstore bundles.
	Bundles int `json:"bundles"`
	// Kept counts digests whose earlier signature of ours, in the other
	// format, decided the format (never both formats on one digest).
	Kept int `json:"kept_format"`
	// bundlesHidden: the target shows only .sig signatures (Harbor before
	// 2.15, or a Harbor that does not say its version).
	bundlesHidden bool
}

// maxProbeBody bounds what the probe reads of any answer.
const maxProbeBody = 64 << 10

// ChooseSignatureFormat decides the signature format for an import into
// registry (HOST[/PREFIX]) of repo. auto asks the target: Harbor answers
// /api/v2.0/systeminfo (its version only to signed-in users); another
// registry is asked whether it serves the OCI referrers API. Every answer
// leads to legacy for the target as a whole, which every target shows as
// signed; assignFormats then picks sigstore bundles for the digests whose
// vendor signed with one, where the target shows them (not Harbor before
// 2.15). A failed probe is not an error: legacy works everywhere.
func ChooseSignatureFormat(ctx context.Context, requested string, repo name.Repository, rt http.RoundTripper, kc authn.Keychain) (SignatureDecision, error) {
	d := SignatureDecision{Requested: requested, Chosen: SignatureFormatLegacy, Target: "unknown"}
	switch requested {
	case "", SignatureFormatAuto:
		d.Requested = SignatureFormatAuto
	case SignatureFormatLegacy:
		d.Reason = "requested"
		return d, nil
	case SignatureFormatBundle:
		d.Chosen, d.Reason = SignatureFormatBundle, "requested"
		return d, nil
	default:
		return d, fmt.Errorf("signature format %q: want auto, legacy or bundle", requested)
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	if kc == nil {
		kc = authn.NewMultiKeychain()
	}
	h, err := probeHarbor(ctx, repo.Registry, rt, kc)
	switch {
	case err != nil:
		d.Reason = fmt.Sprintf("could not ask the target (%v): legacy .sig signatures work on every registry", err)
	case h.isHarbor:
		d.Target, d.Reason = h.describe()
		d.bundlesHidden = h.version == "" || versionBefore(h.version, 2, 15)
	default:
		d.Target, d.Reason = probeReferrers(ctx, repo, rt, kc)
	}
	return d, nil
}

type harborInfo struct {
	isHarbor bool
	version  string
}

func (h harborInfo) describe() (target, reason string) {
	switch {
	case h.version == "":
		return "harbor (version not shown to these credentials)", "Harbor shows legacy .sig signatures as signature.cosign in every version; its version is not shown, so no sigstore bundles (older Harbors do not show them)"
	case versionBefore(h.version, 2, 15):
		return "harbor " + h.version, "Harbor before 2.15 shows only legacy .sig signatures as signature.cosign"
	default:
		return "harbor " + h.version, "Harbor 2.15 and later show sigstore bundles and legacy .sig signatures as signature.cosign: legacy, and sigstore bundles only on digests the vendor signed with one"
	}
}

// probeHarbor asks GET /api/v2.0/systeminfo, first without credentials (a
// registry that is not Harbor never sees them there), then, if Harbor
// answered, with the Docker config's basic credentials for its version.
func probeHarbor(ctx context.Context, reg name.Registry, rt http.RoundTripper, kc authn.Keychain) (harborInfo, error) {
	url := reg.Scheme() + "://" + reg.RegistryStr() + "/api/v2.0/systeminfo"
	info, err := systemInfo(ctx, url, rt, nil)
	if err != nil || info == nil {
		return harborInfo{}, err
	}
	h := harborInfo{isHarbor: true, version: info.Version}
	if h.version != "" {
		return h, nil
	}
	auth, err := kc.Resolve(reg)
	if err != nil {
		return h, nil
	}
	cfg, err := auth.Authorization()
	if err != nil || cfg.Username == "" {
		return h, nil
	}
	if signedIn, err := systemInfo(ctx, url, rt, cfg); err == nil && signedIn != nil {
		h.version = signedIn.Version
	}
	return h, nil
}

type systemInfoJSON struct {
	AuthMode *string `json:"auth_mode"`
	Version  string  `json:"harbor_version"`
}

// systemInfo returns Harbor's systeminfo, or nil when the answer is not
// Harbor's (any status but 200, or JSON without auth_mode).
func systemInfo(ctx context.Context, url string, rt http.RoundTripper, basic *authn.AuthConfig) (*systemInfoJSON, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if basic != nil {
		req.SetBasicAuth(basic.Username, basic.Password)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil
	}
	var si systemInfoJSON
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxProbeBody)).Decode(&si); err != nil || si.AuthMode == nil {
		return nil, nil
	}
	return &si, nil
}

// probeReferrers asks the registry for the referrers of a digest nothing
// has (OCI distribution spec 1.1: 200 with an empty index when the API is
// served, 404 when not).
func probeReferrers(ctx context.Context, repo name.Repository, rt http.RoundTripper, kc authn.Keychain) (target, reason string) {
	const none = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	auth, err := kc.Resolve(repo)
	if err != nil {
		auth = authn.Anonymous
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return "unknown", fmt.Sprintf("could not ask the registry (%v): legacy .sig signatures work on every registry", err)
	}
	url := fmt.Sprintf("%s://%s/v2/%s/referrers/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), none)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "unknown", err.Error()
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "unknown", fmt.Sprintf("could not ask the registry (%v): legacy .sig signatures work on every registry", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if resp.StatusCode == http.StatusOK && strings.Contains(resp.Header.Get("Content-Type"), "application/vnd.oci.image.index.v1+json") {
		return "registry with referrers API", "the registry serves the OCI referrers API; cosign v2 and v3 find legacy .sig signatures: legacy, and sigstore bundles only on digests the vendor signed with one"
	}
	if resp.StatusCode == http.StatusNotFound && strings.Contains(string(body), "NAME_UNKNOWN") {
		return "registry (referrers API not known: the repository is new)", "the repository does not exist yet, so the registry cannot say whether it serves the OCI referrers API; legacy .sig signatures work on every registry"
	}
	return "registry without referrers API", fmt.Sprintf("the registry has no OCI referrers API (HTTP %d): cosign v2 and v3 find legacy .sig signatures by tag", resp.StatusCode)
}

// versionBefore reports whether a Harbor version ("v2.14.4-79a297f7")
// is before major.minor; an unparsable one counts as before.
func versionBefore(v string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(strings.TrimPrefix(v, "v"), "%d.%d", &ma, &mi); err != nil {
		return true
	}
	return ma < major || (ma == major && mi < minor)
}
