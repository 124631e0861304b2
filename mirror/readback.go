package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// readBack asks the registry for everything the import wrote — every
// manifest by digest, every tag, every signature and every attachment (by
// digest, by its cosign tag, and through the referrers API or its fallback
// tag) — so that TUF is published only for what the registry is seen to
// hold. A registry that accepted a push and lost it, or a concurrent
// writer that replaced a tag, fails the import before publishing; the same
// import run again pushes what is missing.
func readBack(ctx context.Context, images []imagePlan, ropts []remote.Option) error {
	return eachImage(ctx, images, 4, func(ctx context.Context, ip *imagePlan) error {
		opts := withCtx(ctx, ropts)
		for _, m := range ip.manifests {
			if err := headIs(ip.repo.Digest(m.digest), m.digest, opts); err != nil {
				return err
			}
		}
		_, tag := repositoryOf(ip.img.Name)
		if err := headIs(ip.repo.Tag(tag), ip.img.Digest, opts); err != nil {
			return err
		}
		for _, sp := range ip.sigs {
			if sp.asBundle {
				if err := readBackBundles(sp, opts); err != nil {
					return err
				}
				continue
			}
			if err := readBackSignature(sp, opts); err != nil {
				return err
			}
		}
		for _, ap := range ip.attachments {
			if err := readBackAttachment(ip, ap, opts); err != nil {
				return err
			}
		}
		return nil
	})
}

func readBackError(what string, err error) error {
	return fmt.Errorf("after pushing, the registry does not hold %s (nothing was published; run the same import again): %w", what, err)
}

// headIs checks that ref resolves to digest.
func headIs(ref name.Reference, digest string, opts []remote.Option) error {
	d, err := remote.Head(ref, opts...)
	if err != nil {
		return readBackError(ref.String(), err)
	}
	if d.Digest.String() != digest {
		return readBackError(ref.String(), fmt.Errorf("it resolves to %s, not %s", d.Digest, digest))
	}
	return nil
}

// readBackSignature checks that a signature tag holds ours (a verifying
// signature by every key over our payload) and every upstream layer merged
// into it.
func readBackSignature(sp *sigPush, opts []remote.Option) error {
	tag, err := SignatureTag(sp.digest)
	if err != nil {
		return err
	}
	ref := sp.repo.Tag(tag)
	d, err := remote.Get(ref, opts...)
	if err != nil {
		return readBackError("the signature "+ref.String(), err)
	}
	if !coveredBy(d.Manifest, sp) {
		return readBackError("the signature "+ref.String(), fmt.Errorf("it lacks our signatures over %s", sp.digest))
	}
	if err := holdsLayers(d.Manifest, sp.upstream); err != nil {
		return readBackError("the signature "+ref.String(), err)
	}
	return nil
}

func readBackAttachment(ip *imagePlan, ap *attachPush, opts []remote.Option) error {
	if ap.merged {
		// Checked with the signature manifest it was merged into.
		return nil
	}
	what := ap.att.Name() + " in " + ip.repo.String()
	// Harbor's cosign policy answers 412 to a pull of any unsigned
	// manifest, attachments included: there the referrers list (which
	// names only manifests Harbor holds) or the tag list stands in.
	err := headIs(ip.repo.Digest(ap.att.Digest), ap.att.Digest, opts)
	if err != nil && !policyRefused(err) {
		return err
	}
	if ap.att.Tag != "" {
		if err == nil {
			return headIs(ip.repo.Tag(ap.att.Tag), ap.att.Digest, opts)
		}
		tags, lerr := remote.List(ip.repo, opts...)
		if lerr != nil || !slices.Contains(tags, ap.att.Tag) {
			return readBackError(what, fmt.Errorf("pulls answer 412 (Harbor's cosign policy) and the tag list lacks %s", ap.att.Tag))
		}
		return nil
	}
	idx, err := remote.Referrers(ip.repo.Digest(ap.att.Subject), opts...)
	if err != nil {
		return readBackError(what, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return readBackError(what, err)
	}
	for _, m := range im.Manifests {
		if m.Digest.String() == ap.att.Digest {
			return nil
		}
	}
	return readBackError(what, fmt.Errorf("the referrers of %s do not list it", ap.att.Subject))
}

// policyRefused is Harbor's answer to a pull its cosign policy refuses.
func policyRefused(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusPreconditionFailed
}

// holdsLayers checks that a manifest lists every wanted layer: same digest,
// media type and annotations.
func holdsLayers(raw []byte, want []v1.Descriptor) error {
	m, err := v1.ParseManifest(strings.NewReader(string(raw)))
	if err != nil {
		return err
	}
	for _, w := range want {
		found := false
		for _, l := range m.Layers {
			if l.Digest == w.Digest && l.MediaType == w.MediaType && sameAnnotations(l.Annotations, w.Annotations) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("it lacks the signature layer %s", w.Digest)
		}
	}
	return nil
}

func sameAnnotations(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
