package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/coldharbor/coldharbor/bundle"
	"github.com/coldharbor/coldharbor/internal/regsession"
	"github.com/coldharbor/coldharbor/trust"
)

// ErrAbsent: a differential bundle left out blobs the registry does not
// have: the images it names as holding them are not (or no longer) there.
var ErrAbsent = errors.New("blobs the bundle expects in the registry are absent")

// presentPlan is a blob a differential bundle left out: where it should
// be (from) and every repository that needs it.
type presentPlan struct {
	blob  bundle.PresentBlob
	from  name.Repository
	repos []name.Repository
}

// addPresent records that ip needs a blob the bundle lists as present.
func (p *plan) addPresent(ip *imagePlan, pb bundle.PresentBlob, d v1.Descriptor) error {
	if pb.Size != d.Size {
		return refuse(trust.WhatBundle, 0, "blob %s is listed as present with %d bytes, its manifest says %d", d.Digest, pb.Size, d.Size)
	}
	pp := p.present[pb.Digest]
	if pp == nil {
		s := strings.TrimSuffix(p.registry, "/") + "/" + pb.Repository
		from, err := name.NewRepository(s, regsession.NameOptions(p.insecure, s, name.StrictValidation)...)
		if err != nil {
			return refuse(trust.WhatBundle, 0, "present blob %s: repository %s: %v", pb.Digest, pb.Repository, err)
		}
		pp = &presentPlan{blob: pb, from: from}
		p.present[pb.Digest] = pp
	}
	if !slices.Contains(pp.repos, ip.repo) {
		pp.repos = append(pp.repos, ip.repo)
	}
	return nil
}

// checkPresent makes sure, before anything is pushed, that every blob the
// bundle left out is in each repository that needs it: there already
// (HEAD), or mounted from the repository the bundle names. Absent ones are
// named together.
func checkPresent(ctx context.Context, p *plan, ropts []remote.Option, jobs int, res *ImportResult) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	var mu sync.Mutex
	var absent []string
	for _, pp := range p.present {
		for _, repo := range pp.repos {
			g.Go(func() error {
				l := &remote.MountableLayer{Layer: absentLayer{pp.blob}, Reference: pp.from.Digest(pp.blob.Digest)}
				err := remote.WriteLayer(repo, l, withCtx(gctx, ropts)...)
				if errors.Is(err, errNotCarried) {
					mu.Lock()
					absent = append(absent, fmt.Sprintf("%s (for %s, expected in %s)", pp.blob.Digest, repo.RepositoryStr(), pp.from.RepositoryStr()))
					mu.Unlock()
					return nil
				}
				if err != nil {
					return fmt.Errorf("checking blob %s in %s: %w", pp.blob.Digest, repo, err)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if len(absent) > 0 {
		slices.Sort(absent)
		return fmt.Errorf("%w: nothing was pushed; %d missing: %s", ErrAbsent, len(absent), strings.Join(absent, ", "))
	}
	res.BlobsExpected = len(p.present)
	return nil
}

var errNotCarried = errors.New("not in the bundle")

// absentLayer is a blob the bundle does not carry: the registry may say it
// has it or mount it, and uploading it fails.
type absentLayer struct{ b bundle.PresentBlob }

func (l absentLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.b.Digest) }
func (l absentLayer) DiffID() (v1.Hash, error) { return v1.Hash{}, errNotCarried }
func (l absentLayer) Compressed() (io.ReadCloser, error) {
	return nil, errNotCarried
}
func (l absentLayer) Uncompressed() (io.ReadCloser, error) { return nil, errNotCarried }
func (l absentLayer) Size() (int64, error)                 { return l.b.Size, nil }
func (l absentLayer) MediaType() (types.MediaType, error)  { return types.OCILayer, nil }
