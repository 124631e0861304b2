package trust

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/coldharbor/coldharbor/internal/atomicfile"
)

// A new root version may replace the snapshot, timestamp and targets keys
// (TUF spec 5.3.11: a client then drops its trusted snapshot and timestamp
// and takes the next ones it is served). Until the next import or refresh
// signs new ones, the files on disk are signed by keys the newest root no
// longer names. This side still needs them, to number the next versions and
// to know what is published; an older root cannot vouch for them (any chain
// of old roots can be forged below a newer one), so whoever publishes a root
// version first notes the sha256 of the timestamp, snapshot and targets it
// verified, in the private state, and LoadState accepts exactly those bytes.
const rotationFile = "online-before-rotation.json"

type rotationNote struct {
	// Root is the first root version published after these files.
	Root      int64             `json:"root"`
	Files     map[string]string `json:"files"` // FileName → sha256 hex
	Snapshot  int64             `json:"snapshot_version"`
	Timestamp int64             `json:"timestamp_version"`
}

// noteOnline records the snapshot and timestamp this publication of root
// version rootV follows on from. The caller holds the lock and has verified
// what is on disk (LoadState).
func noteOnline(dir string, rootV int64) error {
	n := rotationNote{Root: rootV, Files: map[string]string{}}
	if v := highestVersion(dir, Targets); v > 0 {
		if tb, err := readMeta(dir, Targets, v); err == nil {
			n.Files[FileName(Targets, v)] = sum256(tb)
		}
	}
	if tb, err := readMeta(dir, Timestamp, 0); err == nil {
		if old, err := readNote(dir); err == nil && old.Root < rootV && old.Files[FileName(Timestamp, 0)] == sum256(tb) {
			return nil // noted by an earlier rotation that no new timestamp followed
		}
		n.Files[FileName(Timestamp, 0)] = sum256(tb)
		if ts, err := metadata.Timestamp().FromBytes(tb); err == nil {
			n.Timestamp = ts.Signed.Version
			if m := ts.Signed.Meta[Snapshot+".json"]; m != nil {
				if sb, err := readMeta(dir, Snapshot, m.Version); err == nil {
					n.Snapshot = m.Version
					n.Files[FileName(Snapshot, m.Version)] = sum256(sb)
					noteTargets(dir, sb, n.Files)
				}
			}
		}
	}
	if err := ensureStateDir(dir); err != nil {
		return err
	}
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, StateDir, rotationFile), b, 0o600)
}

// noteTargets adds the targets version a snapshot names: published, and
// signed by keys the rotation may replace.
func noteTargets(dir string, snapshot []byte, files map[string]string) {
	sn, err := metadata.Snapshot().FromBytes(snapshot)
	if err != nil {
		return
	}
	if m := sn.Signed.Meta[Targets+".json"]; m != nil {
		if tb, err := readMeta(dir, Targets, m.Version); err == nil {
			files[FileName(Targets, m.Version)] = sum256(tb)
		}
	}
}

func readNote(dir string) (*rotationNote, error) {
	b, err := readBounded(filepath.Join(dir, StateDir, rotationFile), 4096)
	if err != nil {
		return nil, err
	}
	var n rotationNote
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("%s: %w", rotationFile, err)
	}
	return &n, nil
}

func sum256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// verifyOnline verifies a timestamp, snapshot or targets file (name, raw
// bytes) against the newest root; one signed before that root rotated its
// role's keys is accepted when the private note names exactly these bytes,
// and st.Rotated records it.
func (st *State) verifyOnline(dir, role, file string, raw []byte, m any) error {
	err := st.Root.VerifyDelegate(role, m)
	if err == nil {
		return nil
	}
	n, nerr := readNote(dir)
	if nerr != nil || n.Root > st.Root.Signed.Version || n.Files[file] != sum256(raw) {
		return err
	}
	if st.Rotated == nil {
		st.Rotated = map[string]int64{}
	}
	st.Rotated[role] = n.Root
	return nil
}

// Chain returns the root versions this state holds, oldest first, parsed.
// Versions before the pinned root are as the files on disk say: use them
// for messages, never to trust a signature.
func (st *State) Chain() []*metadata.Metadata[metadata.RootType] {
	var out []*metadata.Metadata[metadata.RootType]
	for v := int64(1); v < st.Root.Signed.Version; v++ {
		if b, ok := st.RootRaw[v]; ok {
			if r, err := metadata.Root().FromBytes(b); err == nil {
				out = append(out, r)
			}
		}
	}
	return append(out, st.Root)
}

// CheckRoleKey refuses a key the newest root of chain (oldest first) does
// not name for role. When an earlier root named it, the refusal names the
// root version that rotated it out and the key(s) to use instead.
func CheckRoleKey(chain []*metadata.Metadata[metadata.RootType], role string, pub crypto.PublicKey) error {
	id, err := KeyID(pub)
	if err != nil {
		return err
	}
	root := chain[len(chain)-1]
	ids, _ := RoleKeyIDs(root, role)
	if slices.Contains(ids, id) {
		return nil
	}
	reason := fmt.Sprintf("the key given is not a %s key of root v%d", role, root.Signed.Version)
	for i := len(chain) - 2; i >= 0; i-- {
		if old, _ := RoleKeyIDs(chain[i], role); slices.Contains(old, id) {
			reason = fmt.Sprintf("the key given was a %s key of root v%d; root v%d rotated it out: use the new %s key (%s)", role, chain[i].Signed.Version, chain[i+1].Signed.Version, role, strings.Join(shortIDs(ids), ", "))
			break
		}
	}
	return &VerificationError{What: role, KeyIDs: []string{id}, Reason: reason}
}

func shortIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return out
}
