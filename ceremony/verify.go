package ceremony

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/internal/safefile"
	"github.com/coldharbor/coldharbor/trust"
)

// Report is what `ceremony verify` found.
type Report struct {
	Entries        int                 `json:"entries"`
	TranscriptHead string              `json:"transcript_sha256"`
	RootSHA256     string              `json:"root_sha256"`
	RootVersion    int64               `json:"root_version"`
	Keys           map[string][]string `json:"keys"` // role → key IDs, as the transcript records them
	Checked        []string            `json:"checked"`
	// Sittings are the paper record: per sitting its date, holders, hardware
	// keys, what it published and the running hash after it.
	Sittings []Sitting `json:"sittings"`
}

// Verify replays a repository's transcript: the hash chain of its lines,
// each recorded public key against its key ID, the published files'
// sha256 against the files on disk (versioned files never change), the
// keys and thresholds of root v1 against the recorded ones, and the root
// chain from v1 as a client would walk it. Any mismatch is a refusal.
func Verify(ctx context.Context, dir string) (*Report, error) {
	path := filepath.Join(dir, trust.TranscriptFile)
	t, err := openTranscript(path, time.Now)
	if err != nil {
		return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: err.Error()}
	}
	entries, err := readEntries(path)
	if err != nil {
		return nil, err
	}
	rep := &Report{Entries: len(entries), TranscriptHead: t.head(), Keys: map[string][]string{}}
	published, rotations, err := checkKeyEntries(entries, rep)
	if err != nil {
		return nil, err
	}
	rep.Checked = append(rep.Checked, fmt.Sprintf("hash chain of %d lines", len(entries)), "every recorded public key against its key ID")
	if published == nil {
		return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: "the transcript records no published ceremony (is one pending?)", Err: ErrPending}
	}
	for _, e := range append([]*Entry{published}, rotations...) {
		checked, err := checkFiles(dir, e)
		if err != nil {
			return nil, err
		}
		rep.Checked = append(rep.Checked, checked...)
	}
	rep.RootSHA256 = published.Files[filepath.ToSlash(filepath.Join(trust.MetadataDir, trust.FileName(trust.Root, 1)))]
	st, err := trust.LoadState(ctx, dir)
	if err != nil {
		return nil, err
	}
	rep.RootVersion = st.Root.Signed.Version
	if err := checkRootV1Keys(dir, rep.Keys); err != nil {
		return nil, err
	}
	rep.Checked = append(rep.Checked, "root v1's keys are the recorded ones", fmt.Sprintf("root chain v1..v%d verifies", rep.RootVersion))
	roots, err := rootsOf(st)
	if err != nil {
		return nil, err
	}
	if rep.Sittings, err = checkSittings(entries, roots, rep.TranscriptHead); err != nil {
		return nil, err
	}
	rep.Checked = append(rep.Checked, fmt.Sprintf("%d sittings, each sealed by its holders' keys as the root named them then", len(rep.Sittings)))
	return rep, nil
}

// checkKeyEntries checks every recorded public key against its key ID,
// collects root v1's keys by role into rep, and returns the publication
// entries: the ceremony's and each rotation's.
func checkKeyEntries(entries []Entry, rep *Report) (published *Entry, rotations []*Entry, err error) {
	for i := range entries {
		e := &entries[i]
		switch e.Step {
		case "key", "rotate.add":
			pemKey, _ := e.Detail["public_key"].(string)
			pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(pemKey))
			if err != nil || len(e.KeyIDs) != 1 {
				return nil, nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: fmt.Sprintf("line %d: a key entry without a readable public key", e.Seq)}
			}
			id, err := trust.KeyID(pub)
			if err != nil || id != e.KeyIDs[0] {
				return nil, nil, &trust.VerificationError{What: trust.WhatTranscript, KeyIDs: e.KeyIDs, Reason: fmt.Sprintf("line %d: the recorded public key does not have the recorded key ID", e.Seq)}
			}
			if e.Step == "key" {
				rep.Keys[e.Role] = append(rep.Keys[e.Role], id)
			}
		case "init.published":
			published = e
		case "rotate.published":
			rotations = append(rotations, e)
		}
	}
	return published, rotations, nil
}

// checkRootV1Keys checks that root v1 in dir trusts exactly the keys the
// transcript records for each role.
func checkRootV1Keys(dir string, keys map[string][]string) error {
	b, err := safefile.ReadFile(filepath.Join(dir, trust.MetadataDir, trust.FileName(trust.Root, 1)), trust.MaxRootSize)
	if err != nil {
		return err
	}
	v1, err := metadata.Root().FromBytes(b)
	if err != nil {
		return &trust.VerificationError{What: trust.Root, Version: 1, Reason: "does not parse", Err: err}
	}
	for role, ids := range keys {
		got, _ := trust.RoleKeyIDs(v1, role)
		want := append([]string{}, ids...)
		sort.Strings(got)
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return &trust.VerificationError{What: role, Version: 1, KeyIDs: got, Reason: "root v1 trusts other keys than the transcript records"}
		}
	}
	return nil
}

func readEntries(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

var publishedRE = regexp.MustCompile(`^metadata/([1-9][0-9]{0,9}\.(root|targets|snapshot)|timestamp)\.json$`)

// readSmall reads a metadata file of at most go-tuf's largest limit.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, trust.MaxTargetsSize+1))
	if err == nil && len(b) > trust.MaxTargetsSize {
		err = fmt.Errorf("larger than %d bytes", trust.MaxTargetsSize)
	}
	return b, err
}

// checkFiles compares the files a transcript entry records as published
// with the files on disk; timestamp.json alone is replaced by design.
func checkFiles(dir string, e *Entry) ([]string, error) {
	names := make([]string, 0, len(e.Files))
	for n := range e.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	var checked []string
	for _, n := range names {
		if filepath.Base(n) == trust.FileName(trust.Timestamp, 0) {
			continue
		}
		// The transcript is public: read only metadata files it may name.
		if !publishedRE.MatchString(n) {
			return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: fmt.Sprintf("line %d names %q, which is not a metadata file", e.Seq, n)}
		}
		b, err := readSmall(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil {
			return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: fmt.Sprintf("%s, recorded as published, cannot be read: %v", n, err)}
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != e.Files[n] {
			return nil, &trust.VerificationError{What: trust.WhatTranscript, Reason: fmt.Sprintf("%s has sha256 %s, the transcript recorded %s (line %d)", n, got, e.Files[n], e.Seq)}
		}
		checked = append(checked, n+" unchanged since it was published")
	}
	return checked, nil
}
