package testenv

import (
	"bytes"
	"sync"
)

// Output collects a child process's output: exec writes it from its own
// goroutines (stdout and stderr may be the same Output) while a test reads
// it when it fails.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
