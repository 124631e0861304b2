// Command bench is `make bench`: it measures coldharbor against crane on the
// same work in the same run, on loopback only, and prints ratios. It is a
// measurement, not a test: there are no thresholds, and it exits 0 unless a
// step fails.
//
//	bench [-coldharbor bin/coldharbor] [-crane PATH] [-images 3] [-layers 4] [-layer-mib 16] [-quick]
//
// It starts two registries (the Debian docker-registry, TLS and htpasswd, as
// internal/testregistry runs it), pushes a workload of incompressible,
// seed-determined layers to the source, then times, each into a fresh target
// repository prefix:
//
//	a. crane copy of every image, vs coldharbor export + sign + import;
//	b. crane pull --format=oci of every image, vs coldharbor export;
//	c. crane copy under new tags into a target that has every blob, vs a
//	   second coldharbor import of a new bundle of the same images.
//	d. crane pull of every image straight from the target registry, vs the
//	   same pull through `coldharbor serve` in front of it (best of 3 each).
//
// Every registry connection of the tools goes through a counting TCP relay,
// so "moved" is what crossed the loopback in both directions (TLS
// included). Peak RSS is each child's ru_maxrss. Everything lives in a
// temporary directory that is removed at the end.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/coldharbor/coldharbor/internal/testimages"
	"github.com/coldharbor/coldharbor/internal/testregistry"
)

// options are the bench's flags.
type options struct {
	coldharbor string
	crane      string
	images     int     // plain images; the first two share layers
	layers     int     // layers per plain image
	layerMiB   float64 // size of each layer
	seed       uint64
	timeout    time.Duration
	runs       int // whole runs (fresh registries each); the table shows medians

	out io.Writer // the table
	log io.Writer // progress, one line per command
}

// quickSizes are -quick's sizes: enough to run every step, small enough for
// a smoke test.
func (o *options) quickSizes() {
	o.images, o.layers, o.layerMiB = 2, 2, 0.25
}

func main() {
	o := options{out: os.Stdout, log: os.Stderr}
	flag.StringVar(&o.coldharbor, "coldharbor", "bin/coldharbor", "the coldharbor binary to measure")
	flag.StringVar(&o.crane, "crane", envOr("COLDHARBOR_CRANE", "crane"), "the crane binary to compare with (default $COLDHARBOR_CRANE, else crane on the PATH)")
	flag.IntVar(&o.images, "images", 3, "plain images in the workload (the first two share their first 2 layers), plus one 2-platform index")
	flag.IntVar(&o.layers, "layers", 4, "layers per plain image (each platform image of the index has half as many)")
	flag.Float64Var(&o.layerMiB, "layer-mib", 16, "size of each layer in MiB (random, incompressible)")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the layer contents (same seed, same digests)")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after this long")
	flag.IntVar(&o.runs, "runs", 3, "whole runs, each on fresh registries; the table shows each step's median")
	quick := flag.Bool("quick", false, "tiny sizes (2 images of 2 layers of 256 KiB), for a smoke test")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: bench [flags]; see -help")
		os.Exit(2)
	}
	if *quick {
		o.quickSizes()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		stop()
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// bench is one run's state.
type bench struct {
	o        options
	dir      string // the temporary directory; everything goes under it
	env      []string
	src, tgt *meter // the registries, as the tools reach them
	srcReg   *testregistry.Registry
	tgtReg   *testregistry.Registry
	work     *workload
}

// run runs the whole bench o.runs times (at least once) and reports each
// step's median run, dated, with the machine's load.
func run(ctx context.Context, o options) error {
	var all [][]row
	var last *bench
	for i := range max(1, o.runs) {
		if o.log != nil {
			fmt.Fprintf(o.log, "run %d of %d\n", i+1, max(1, o.runs))
		}
		rows, b, err := runOnce(ctx, o)
		if err != nil {
			return err
		}
		all, last = append(all, rows), b
	}
	last.report(medianRows(all), len(all))
	return nil
}

// medianRows picks, step by step, the run whose time is the median (for
// coldharbor and for crane apart); notes come from the last run.
func medianRows(all [][]row) []row {
	out := append([]row(nil), all[len(all)-1]...)
	for i := range out {
		var chs, cranes []measurement
		for _, rows := range all {
			chs, cranes = append(chs, rows[i].ch), append(cranes, rows[i].crane)
		}
		out[i].ch, out[i].crane = median(chs), median(cranes)
	}
	return out
}

func median(ms []measurement) measurement {
	sorted := append([]measurement(nil), ms...)
	slices.SortFunc(sorted, func(a, b measurement) int { return cmp.Compare(a.wall, b.wall) })
	return sorted[len(sorted)/2]
}

// runOnce is one whole run on fresh registries; it returns the rows.
func runOnce(ctx context.Context, o options) (rows []row, b *bench, err error) {
	if o.images < 1 || o.layers < 1 || o.layerMiB <= 0 {
		return nil, nil, fmt.Errorf("-images and -layers must be at least 1 and -layer-mib above 0")
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	if o.out == nil {
		o.out = io.Discard
	}
	if o.log == nil {
		o.log = io.Discard
	}
	for _, p := range []*string{&o.coldharbor, &o.crane} {
		path, err := exec.LookPath(*p)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w (make bench builds coldharbor and crane)", *p, err)
		}
		if *p, err = filepath.Abs(path); err != nil {
			return nil, nil, err
		}
	}
	if _, err := os.Stat(testregistry.Binary); err != nil {
		return nil, nil, fmt.Errorf("%s is missing: make deps installs the docker-registry package", testregistry.Binary)
	}

	dir, err := os.MkdirTemp("", "coldharbor-bench-")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	b = &bench{o: o, dir: dir}

	// Two registries, each behind a counting relay.
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close()
	start := time.Now()
	for _, r := range []struct {
		name string
		reg  **testregistry.Registry
		m    **meter
	}{{"source", &b.srcReg, &b.src}, {"target", &b.tgtReg, &b.tgt}} {
		reg, proc, err := testregistry.Launch(ctx, filepath.Join(dir, r.name+"-registry"), logFile)
		if err != nil {
			return nil, nil, fmt.Errorf("start the %s registry: %w", r.name, err)
		}
		defer func() {
			if serr := proc.Stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		m, err := newMeter(reg.Host)
		if err != nil {
			return nil, nil, err
		}
		defer m.close()
		*r.reg, *r.m = reg, m
	}
	// The certificates name 127.0.0.1, so they hold on the relays' ports too.
	dockerConfig, caFile, err := testregistry.WriteClientConfig(dir, map[string]*testregistry.Registry{
		b.srcReg.Host: b.srcReg, b.src.host(): b.srcReg, b.tgtReg.Host: b.tgtReg, b.tgt.host(): b.tgtReg})
	if err != nil {
		return nil, nil, err
	}
	b.env = childEnv(dockerConfig, caFile, dir)
	fmt.Fprintf(o.log, "registries: source %s (via %s), target %s (via %s), up in %s\n",
		b.srcReg.Host, b.src.host(), b.tgtReg.Host, b.tgt.host(), since(start))

	// The workload, pushed straight to the source registry (not metered).
	start = time.Now()
	if b.work, err = newWorkload(o); err != nil {
		return nil, nil, err
	}
	if err := b.work.push(ctx, b.srcReg); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(o.log, "workload: %s; pushed in %s\n", b.work.describe(), since(start))

	// Keys and a root of trust; the exporter's and the isolated side's
	// repositories are copies of the signer's, as in the demo.
	if err := b.ceremony(ctx); err != nil {
		return nil, nil, err
	}

	rows, err = b.steps(ctx)
	return rows, b, err
}

func since(t time.Time) string { return time.Since(t).Round(10 * time.Millisecond).String() }

// childEnv is this process's environment with the bench's registries, CA
// bundle, key password and cache in place of the user's.
func childEnv(dockerConfig, caFile, dir string) []string {
	drop := []string{"DOCKER_CONFIG=", "SSL_CERT_FILE=", "SSL_CERT_DIR=", "COLDHARBOR_PASSWORD=", "COSIGN_PASSWORD=", "XDG_CACHE_HOME=", "COLDHARBOR_PIN="}
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, d := range drop {
			if strings.HasPrefix(kv, d) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return append(env,
		"DOCKER_CONFIG="+dockerConfig,
		"SSL_CERT_FILE="+caFile,
		"COLDHARBOR_PASSWORD=coldharbor-bench",
		"XDG_CACHE_HOME="+filepath.Join(dir, "cache"),
	)
}

// ---- the workload ----

// workload is the source's images: plain images img-1…img-N (img-1 and
// img-2 share their first two layers, or all but one when there are fewer)
// and one OCI index of two platform images. Layers are generated, not
// stored: each read regenerates a layer's bytes from the seed, so nothing
// holds a layer in memory or on disk.
type workload struct {
	images     map[string]v1.Image // repository:tag → image
	index      v1.ImageIndex
	indexName  string
	names      []string // every repository:tag, plain images first
	layerBytes int64    // bytes of one layer's blob
	unique     int      // distinct layers
	total      int64    // bytes of every distinct blob (layers, configs, manifests)
}

func newWorkload(o options) (*workload, error) {
	size := int64(o.layerMiB * (1 << 20))
	w := &workload{images: map[string]v1.Image{}, indexName: "bench/multi:v1"}
	shared := min(2, o.layers-1)
	if o.images < 2 {
		shared = 0
	}
	var base []v1.Layer
	for i := range shared {
		l, err := testimages.RandomLayer(o.seed, fmt.Sprintf("shared-%d", i), size)
		if err != nil {
			return nil, err
		}
		base = append(base, l)
	}
	w.unique += len(base)
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	for i := 1; i <= o.images; i++ {
		var layers []v1.Layer
		if i <= 2 {
			layers = append(layers, base...)
		}
		for j := len(layers); j < o.layers; j++ {
			l, err := testimages.RandomLayer(o.seed, fmt.Sprintf("img-%d-%d", i, j), size)
			if err != nil {
				return nil, err
			}
			layers = append(layers, l)
			w.unique++
		}
		img, err := testimages.Image(amd64, layers...)
		if err != nil {
			return nil, err
		}
		n := fmt.Sprintf("bench/img-%d:v1", i)
		w.images[n] = img
		w.names = append(w.names, n)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		p := v1.Platform{OS: "linux", Architecture: arch}
		var layers []v1.Layer
		for j := range max(1, o.layers/2) {
			l, err := testimages.RandomLayer(o.seed, fmt.Sprintf("multi-%s-%d", arch, j), size)
			if err != nil {
				return nil, err
			}
			layers = append(layers, l)
			w.unique++
		}
		img, err := testimages.Image(p, layers...)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	w.index = idx
	w.names = append(w.names, w.indexName)
	// Every distinct blob once, as a bundle or an OCI layout holds them.
	seen := map[v1.Hash]bool{}
	add := func(h v1.Hash, n int64) {
		if !seen[h] {
			seen[h] = true
			w.total += n
		}
	}
	addImage := func(img v1.Image) error {
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		d, _ := img.Digest()
		s, _ := img.Size()
		add(d, s)
		add(m.Config.Digest, m.Config.Size)
		for _, l := range m.Layers {
			add(l.Digest, l.Size)
			w.layerBytes = l.Size
		}
		return nil
	}
	for _, n := range w.names[:len(w.names)-1] {
		if err := addImage(w.images[n]); err != nil {
			return nil, err
		}
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, c := range im.Manifests {
		img, err := idx.Image(c.Digest)
		if err != nil {
			return nil, err
		}
		if err := addImage(img); err != nil {
			return nil, err
		}
	}
	d, _ := idx.Digest()
	s, _ := idx.Size()
	add(d, s)
	return w, nil
}

func (w *workload) describe() string {
	plural := "s"
	if len(w.images) == 1 {
		plural = ""
	}
	return fmt.Sprintf("%d image%s + a 2-platform index, %d distinct layers of %s (%s in all)",
		len(w.images), plural, w.unique, mib(w.layerBytes), mib(w.total))
}

// push writes the workload to the source registry, each shared blob once.
func (w *workload) push(ctx context.Context, r *testregistry.Registry) error {
	m := map[name.Reference]remote.Taggable{}
	for n, img := range w.images {
		ref, err := name.NewTag(r.Host + "/" + n)
		if err != nil {
			return err
		}
		m[ref] = img
	}
	ref, err := name.NewTag(r.Host + "/" + w.indexName)
	if err != nil {
		return err
	}
	m[ref] = w.index
	if err := remote.MultiWrite(m, remote.WithContext(ctx), remote.WithAuthFromKeychain(r.Keychain()), remote.WithTransport(r.Transport())); err != nil {
		return fmt.Errorf("push the workload: %w", err)
	}
	return nil
}

// digests returns the source digest of every name.
func (w *workload) digests() (map[string]v1.Hash, error) {
	out := map[string]v1.Hash{}
	for n, img := range w.images {
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		out[n] = d
	}
	d, err := w.index.Digest()
	if err != nil {
		return nil, err
	}
	out[w.indexName] = d
	return out, nil
}

// ---- keys and the root of trust ----

func (b *bench) path(p ...string) string { return filepath.Join(append([]string{b.dir}, p...)...) }

func (b *bench) ceremony(ctx context.Context) error {
	start := time.Now()
	if err := os.MkdirAll(b.path("keys"), 0o700); err != nil {
		return err
	}
	for _, k := range []string{"root", "targets", "snapshot", "timestamp"} {
		if _, err := b.exec(ctx, b.o.coldharbor, "keys", "generate", "file:"+b.path("keys", k+".key")); err != nil {
			return err
		}
	}
	if _, err := b.exec(ctx, b.o.coldharbor, "ceremony", "init", "--repo", b.path("signer"),
		"--root-key", "file:"+b.path("keys", "root.key"),
		"--targets-key", "file:"+b.path("keys", "targets.key"),
		"--snapshot-key", "file:"+b.path("keys", "snapshot.key"),
		"--timestamp-key", "file:"+b.path("keys", "timestamp.key")); err != nil {
		return err
	}
	if err := copyDir(ctx, b.path("signer"), b.path("isolated")); err != nil {
		return err
	}
	fmt.Fprintf(b.o.log, "keys and root of trust: %s\n", since(start))
	return nil
}

// copyDir copies a repository as an operator would carry it (cp -a).
func copyDir(ctx context.Context, from, to string) error {
	if err := os.RemoveAll(to); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", from, to).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %v: %s", from, to, err, out)
	}
	return nil
}

// ---- running the tools ----

// measurement is one child process (or several, summed).
type measurement struct {
	wall  time.Duration
	rss   int64 // peak resident set, bytes (the largest of several)
	net   int64 // bytes through the relays, both directions
	out   []byte
	valid bool
}

func (m measurement) plus(n measurement) measurement {
	return measurement{wall: m.wall + n.wall, rss: max(m.rss, n.rss), net: m.net + n.net, out: n.out, valid: true}
}

// exec runs one child with the bench's environment in the bench directory,
// and measures its wall time, peak RSS and registry traffic.
func (b *bench) exec(ctx context.Context, bin string, args ...string) (measurement, error) {
	before := b.src.bytes.Load() + b.tgt.bytes.Load()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = b.env
	cmd.Dir = b.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	show := filepath.Base(bin) + " " + strings.ReplaceAll(strings.Join(args, " "), b.dir+"/", "")
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %v\n%s%s", show, err, stdout.Bytes(), stderr.Bytes())
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024 // KiB on Linux
	}
	// The relays count a connection when it closes; the child's close as it
	// exits, so wait (bounded) until every relay has finished.
	if err := b.src.waitIdle(5 * time.Second); err != nil {
		return measurement{}, err
	}
	if err := b.tgt.waitIdle(5 * time.Second); err != nil {
		return measurement{}, err
	}
	m := measurement{wall: wall, rss: rss, net: b.src.bytes.Load() + b.tgt.bytes.Load() - before, out: stdout.Bytes(), valid: true}
	fmt.Fprintf(b.o.log, "  %6.2fs  %9s RSS  %9s moved  $ %s\n", wall.Seconds(), mib(rss), mib(m.net), show)
	return m, nil
}

// ---- the steps ----

type row struct {
	step          string
	crane, ch     measurement
	craneArtefact int64 // step b: bytes on disk
	chArtefact    int64
	note          string
}

func (b *bench) steps(ctx context.Context) ([]row, error) {
	src, tgt := b.src.host(), b.tgt.host()
	var imgArgs []string
	for _, n := range b.work.names {
		imgArgs = append(imgArgs, src+"/"+n)
	}
	want, err := b.work.digests()
	if err != nil {
		return nil, err
	}
	var rows []row
	fmt.Fprintln(b.o.log, "a. copy every image into an empty target")
	a := row{step: "a. copy into an empty target (total)"}
	for _, n := range b.work.names {
		m, err := b.exec(ctx, b.o.crane, "copy", src+"/"+n, tgt+"/crane-a/"+n)
		if err != nil {
			return nil, err
		}
		a.crane = a.crane.plus(m)
	}
	export, err := b.exec(ctx, b.o.coldharbor, append([]string{"export", "--repo", b.path("isolated"), "--dest", tgt + "/ch-a",
		"-o", b.path("a.bundle.tar"), "--output", "json"}, imgArgs...)...)
	if err != nil {
		return nil, err
	}
	sign, err := b.exec(ctx, b.o.coldharbor, "sign", b.path("a.bundle.tar"), "--repo", b.path("signer"),
		"--key", "file:"+b.path("keys", "targets.key"), "-o", b.path("a.approval.tar"), "--yes", "--output", "json")
	if err != nil {
		return nil, err
	}
	imp, err := b.importBundle(ctx, "a", tgt+"/ch-a")
	if err != nil {
		return nil, err
	}
	a.ch = export.plus(sign).plus(imp)
	rows = append(rows, a,
		row{step: "   coldharbor export", ch: export},
		row{step: "   coldharbor sign --yes", ch: sign},
		row{step: "   coldharbor import", ch: imp, note: importNote(imp.out)})
	for _, prefix := range []string{"crane-a", "ch-a"} {
		if err := b.check(ctx, prefix, want, ""); err != nil {
			return nil, err
		}
	}

	fmt.Fprintln(b.o.log, "b. pull every image into a local artefact")
	bRow := row{step: "b. pull to a local artefact"}
	if bRow.crane, err = b.exec(ctx, b.o.crane, append(append([]string{"pull", "--format=oci"}, imgArgs...), b.path("b.oci"))...); err != nil {
		return nil, err
	}
	if bRow.ch, err = b.exec(ctx, b.o.coldharbor, append([]string{"export", "--repo", b.path("isolated"), "--dest", tgt + "/ch-b",
		"-o", b.path("b.bundle.tar"), "--output", "json"}, imgArgs...)...); err != nil {
		return nil, err
	}
	if bRow.craneArtefact, err = duBytes(b.path("b.oci")); err != nil {
		return nil, err
	}
	if bRow.chArtefact, err = duBytes(b.path("b.bundle.tar")); err != nil {
		return nil, err
	}
	bRow.note = fmt.Sprintf("artefact: crane OCI layout %s, coldharbor bundle %s", mib(bRow.craneArtefact), mib(bRow.chArtefact))
	rows = append(rows, bRow)

	fmt.Fprintln(b.o.log, "c. copy the same images again under new tags (every blob already in the target)")
	c := row{step: "c. copy again, blobs present"}
	var renames []string
	for _, n := range b.work.names {
		m, err := b.exec(ctx, b.o.crane, "copy", src+"/"+n, tgt+"/crane-a/"+retag(n))
		if err != nil {
			return nil, err
		}
		c.crane = c.crane.plus(m)
		renames = append(renames, src+"/"+n+"="+retag(n))
	}
	// The new bundle is exported and signed untimed: the step compares the
	// import, which is what blob skipping speeds up.
	if _, err := b.exec(ctx, b.o.coldharbor, append([]string{"export", "--repo", b.path("isolated"), "--dest", tgt + "/ch-a",
		"-o", b.path("c.bundle.tar"), "--output", "json"}, renames...)...); err != nil {
		return nil, err
	}
	if _, err := b.exec(ctx, b.o.coldharbor, "sign", b.path("c.bundle.tar"), "--repo", b.path("signer"),
		"--key", "file:"+b.path("keys", "targets.key"), "-o", b.path("c.approval.tar"), "--yes", "--output", "json"); err != nil {
		return nil, err
	}
	if c.ch, err = b.importBundle(ctx, "c", tgt+"/ch-a"); err != nil {
		return nil, err
	}
	c.note = importNote(c.ch.out)
	rows = append(rows, c)
	for _, prefix := range []string{"crane-a", "ch-a"} {
		if err := b.check(ctx, prefix, want, "v2"); err != nil {
			return nil, err
		}
	}
	d, err := b.gateStep(ctx)
	if err != nil {
		return nil, err
	}
	rows = append(rows, d)
	ours, err := b.bundleSteps(ctx, bRow.ch)
	if err != nil {
		return nil, err
	}
	return append(rows, ours...), nil
}

// bundleSteps are coldharbor's own ways to move less (no crane
// equivalent): e. a differential bundle of the same images under new tags,
// exported --since the isolated side's repository, against the full
// bundle of step c; f. the bundle of step b split into 64 MiB parts.
func (b *bench) bundleSteps(ctx context.Context, plain measurement) ([]row, error) {
	src, tgt := b.src.host(), b.tgt.host()
	var renames, imgArgs []string
	for _, n := range b.work.names {
		renames = append(renames, src+"/"+n+"="+strings.TrimSuffix(n, ":v1")+":v3")
		imgArgs = append(imgArgs, src+"/"+n)
	}
	fmt.Fprintln(b.o.log, "e. differential bundle (export --since) of the same images under new tags")
	e := row{step: "e. export --since (differential)"}
	var err error
	if e.ch, err = b.exec(ctx, b.o.coldharbor, append([]string{"export", "--repo", b.path("isolated"), "--since", b.path("isolated"),
		"--dest", tgt + "/ch-a", "-o", b.path("e.bundle.tar"), "--output", "json"}, renames...)...); err != nil {
		return nil, err
	}
	if _, err := b.exec(ctx, b.o.coldharbor, "sign", b.path("e.bundle.tar"), "--repo", b.path("signer"),
		"--key", "file:"+b.path("keys", "targets.key"), "-o", b.path("e.approval.tar"), "--yes", "--output", "json"); err != nil {
		return nil, err
	}
	imp, err := b.importBundle(ctx, "e", tgt+"/ch-a")
	if err != nil {
		return nil, err
	}
	full, err := duBytes(b.path("c.bundle.tar"))
	if err != nil {
		return nil, err
	}
	if e.chArtefact, err = duBytes(b.path("e.bundle.tar")); err != nil {
		return nil, err
	}
	e.note = fmt.Sprintf("differential bundle %s vs full %s (%.2f%%)", mib(e.chArtefact), mib(full), 100*float64(e.chArtefact)/float64(full))
	fmt.Fprintln(b.o.log, "f. the bundle of step b split into 64 MiB parts")
	f := row{step: "f. export --split 64M"}
	if f.ch, err = b.exec(ctx, b.o.coldharbor, append([]string{"export", "--repo", b.path("isolated"), "--dest", tgt + "/ch-b",
		"-o", b.path("f.bundle.tar"), "--split", "64M", "--output", "json"}, imgArgs...)...); err != nil {
		return nil, err
	}
	f.note = fmt.Sprintf("split export %.2f s vs one-file export %.2f s (step b): overhead %.2f", f.ch.wall.Seconds(), plain.wall.Seconds(), f.ch.wall.Seconds()/plain.wall.Seconds())
	return []row{e, {step: "   import of the differential bundle", ch: imp, note: importNote(imp.out)}, f}, nil
}

func (b *bench) importBundle(ctx context.Context, step, registry string) (measurement, error) {
	return b.exec(ctx, b.o.coldharbor, "import", b.path(step+".bundle.tar"), b.path(step+".approval.tar"),
		"--repo", b.path("isolated"), "--registry", registry,
		"--snapshot-key", "file:"+b.path("keys", "snapshot.key"), "--timestamp-key", "file:"+b.path("keys", "timestamp.key"),
		"--output", "json")
}

// retag is repository:v1 → repository:v2.
func retag(n string) string { return strings.TrimSuffix(n, ":v1") + ":v2" }

// importNote summarises an import's JSON result.
func importNote(out []byte) string {
	var r struct {
		Pushed  int   `json:"blobs_pushed"`
		Present int   `json:"blobs_present"`
		Mounted int   `json:"blobs_mounted"`
		Bytes   int64 `json:"bytes_pushed"`
		Sigs    int   `json:"signature_manifests"`
		Left    int   `json:"blobs_expected_present"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return ""
	}
	return fmt.Sprintf("%d blobs pushed (%s), %d already present, %d mounted, %d left out of the bundle and found, %d signature manifests",
		r.Pushed, mib(r.Bytes), r.Present, r.Mounted, r.Left, r.Sigs)
}

// check makes sure both tools did the same work: every name under prefix
// in the target has the source's digest. With newTag, names are retagged.
func (b *bench) check(ctx context.Context, prefix string, want map[string]v1.Hash, newTag string) error {
	for n, d := range want {
		if newTag != "" {
			n = retag(n)
		}
		ref, err := name.NewTag(b.tgtReg.Host + "/" + prefix + "/" + n)
		if err != nil {
			return err
		}
		desc, err := remote.Head(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(b.tgtReg.Keychain()), remote.WithTransport(b.tgtReg.Transport()))
		if err != nil {
			return fmt.Errorf("checking %s: %w", ref, err)
		}
		if desc.Digest != d {
			return fmt.Errorf("%s is %s in the target, %s in the source", ref, desc.Digest, d)
		}
	}
	return nil
}

// duBytes is the size of a file, or of every file under a directory.
func duBytes(path string) (int64, error) {
	var n int64
	err := filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// ---- the report ----

func (b *bench) report(rows []row, runs int) {
	w := b.o.out
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "\ncoldharbor vs crane, %s\n", b.work.describe())
	fmt.Fprintf(w, "%s, %d CPUs, load average %s; median of %d run(s), seed %d\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "), runs, b.o.seed)
	fmt.Fprintf(w, "(wall seconds; ratio = coldharbor/crane; moved = registry traffic both ways, TLS included; RSS = peak of each process)\n\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\tcrane s\tcoldharbor s\tratio\tcrane moved\tcoldharbor moved\tcrane RSS MiB\tcoldharbor RSS MiB\t")
	cell := func(m measurement, f func(measurement) string) string {
		if !m.valid {
			return "-"
		}
		return f(m)
	}
	secs := func(m measurement) string { return fmt.Sprintf("%.2f", m.wall.Seconds()) }
	moved := func(m measurement) string { return mib(m.net) }
	rss := func(m measurement) string { return fmt.Sprintf("%.0f", float64(m.rss)/(1<<20)) }
	var notes []string
	for _, r := range rows {
		ratio := "-"
		if r.crane.valid && r.ch.valid && r.crane.wall > 0 {
			ratio = fmt.Sprintf("%.2f", r.ch.wall.Seconds()/r.crane.wall.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.step,
			cell(r.crane, secs), cell(r.ch, secs), ratio,
			cell(r.crane, moved), cell(r.ch, moved), cell(r.crane, rss), cell(r.ch, rss))
		if r.note != "" {
			notes = append(notes, strings.TrimSpace(r.step)+": "+r.note)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	var crane, ch time.Duration
	var craneRSS, chRSS int64
	for _, r := range rows {
		if r.crane.valid && r.ch.valid && !strings.HasPrefix(r.step, "d.") {
			crane += r.crane.wall
			ch += r.ch.wall
			craneRSS, chRSS = max(craneRSS, r.crane.rss), max(chRSS, r.ch.rss)
		}
	}
	fmt.Fprintf(w, "\nsummary: steps a+b+c took coldharbor %.1f s and crane %.1f s (ratio %.2f); peak RSS coldharbor %s, crane %s, with layers of %s\n",
		ch.Seconds(), crane.Seconds(), ch.Seconds()/crane.Seconds(), mib(chRSS), mib(craneRSS), mib(b.work.layerBytes))
}

func mib(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// ---- the counting relay ----

// meter relays TCP connections from a loopback port to a registry and
// counts the bytes both ways. Counts are added when a connection closes.
type meter struct {
	ln      net.Listener
	backend string
	bytes   atomic.Int64
	active  atomic.Int64
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	done    chan struct{}
}

func newMeter(backend string) (*meter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay for %s: %w", backend, err)
	}
	m := &meter{ln: ln, backend: backend, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	go m.serve()
	return m, nil
}

func (m *meter) host() string { return m.ln.Addr().String() }

func (m *meter) serve() {
	defer close(m.done)
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.active.Add(1)
		go m.relay(c)
	}
}

func (m *meter) relay(c net.Conn) {
	defer m.active.Add(-1)
	be, err := net.DialTimeout("tcp", m.backend, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	m.mu.Lock()
	m.conns[c], m.conns[be] = struct{}{}, struct{}{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	var once sync.Once
	closeBoth := func() { c.Close(); be.Close() }
	for _, p := range [][2]net.Conn{{be, c}, {c, be}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// TCP to TCP: io.Copy splices in the kernel.
			n, _ := io.Copy(p[0], p[1])
			m.bytes.Add(n)
			// HTTP: when one side is done the connection is over.
			once.Do(closeBoth)
		}()
	}
	wg.Wait()
	m.mu.Lock()
	delete(m.conns, c)
	delete(m.conns, be)
	m.mu.Unlock()
}

// waitIdle waits until no connection is open, at most d.
func (m *meter) waitIdle(d time.Duration) error {
	deadline := time.Now().Add(d)
	for m.active.Load() > 0 {
		if time.Now().After(deadline) {
			return errors.New("relay: connections still open " + d.String() + " after the tool exited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func (m *meter) close() {
	m.ln.Close()
	<-m.done
	m.mu.Lock()
	for c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	_ = m.waitIdle(5 * time.Second)
}
