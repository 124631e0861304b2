package ceremony

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/coldharbor/coldharbor/hsm"
)

// Entry is one line of transcript.jsonl. Each line carries the sha256 of the
// line before it (Prev), so a line removed or edited breaks the chain that
// `ceremony verify` replays, and the last line's hash, read aloud or written
// on paper, pins the whole record.
type Entry struct {
	Seq     int               `json:"seq"`
	Time    time.Time         `json:"time"`
	Step    string            `json:"step"`
	Prev    string            `json:"prev"`
	Role    string            `json:"role,omitempty"`
	Version int64             `json:"version,omitempty"`
	KeyIDs  []string          `json:"keyids,omitempty"`
	Files   map[string]string `json:"files,omitempty"` // name → sha256 hex
	Detail  map[string]any    `json:"detail,omitempty"`
}

// transcript accumulates entries in memory; Init appends them to the file
// only once the repository is published, so a failed ceremony leaves no
// record of steps that did not happen.
type transcript struct {
	now     func() time.Time
	keys    []*hsm.Key // used in this sitting: they sign its seal
	prev    string
	seq     int
	entries [][]byte
}

func (t *transcript) add(e Entry) error {
	t.seq++
	e.Seq, e.Time, e.Prev = t.seq, t.now().UTC().Truncate(time.Second), t.prev
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("transcript: %w", err)
	}
	sum := sha256.Sum256(line)
	t.prev = hex.EncodeToString(sum[:])
	t.entries = append(t.entries, line)
	return nil
}

// write appends the entries not yet written to path and syncs it.
func (t *transcript) write(path string) error {
	defer func() { t.entries = nil }()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("writing transcript: %w", err)
	}
	for _, l := range t.entries {
		if _, err := f.Write(append(l, '\n')); err != nil {
			f.Close()
			return fmt.Errorf("writing transcript: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing transcript: %w", err)
	}
	return f.Close()
}

// Head is the sha256 of the last line written: the value for the paper record.
func (t *transcript) head() string { return t.prev }
