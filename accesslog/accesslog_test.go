package accesslog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"sluice/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer is a bytes.Buffer safe to write from the writer goroutine
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// counter is a dropped callback.
type counter struct{ n atomic.Int64 }

func (c *counter) inc() { c.n.Add(1) }

func enabled(sample float64) config.AccessLog {
	return config.AccessLog{Enabled: true, Path: "stdout", Sample: sample}
}

func newLogger(t *testing.T, cfg config.AccessLog, out *syncBuffer) (*Logger, *counter) {
	t.Helper()
	var c counter
	l, err := New(cfg, out, c.inc)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, &c
}

// fill sets every field of e the way the proxy would, copying the bytes.
func fill(e *Entry, path string) {
	e.Time = time.Date(2025, 3, 4, 5, 6, 7, 891_000_000, time.UTC)
	e.Remote = netip.MustParseAddrPort("192.0.2.7:51234")
	e.Method = append(e.Method, "GET"...)
	e.Host = append(e.Host, "example.com"...)
	e.Path = append(e.Path, path...)
	e.Status = 200
	e.BytesIn = 12
	e.BytesOut = 3456
	e.Duration = 1234567 * time.Nanosecond
	e.UpstreamAddr = "10.0.0.1:8080"
	e.UpstreamDuration = 1100 * time.Microsecond
	e.Attempts = 2
	e.UpstreamError = "reset"
	e.Route = "api"
	e.Pool = "web"
	e.RequestID = append(e.RequestID, "3f2a9c1d0b8e7a65"...)
}

func lines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestEntryFields(t *testing.T) {
	var out syncBuffer
	l, _ := newLogger(t, enabled(1), &out)
	e := l.Acquire()
	fill(e, "/v1/items?id=3")
	l.Submit(e)
	if err := l.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	want := `{"time":"2025-03-04T05:06:07.891Z","remote_addr":"192.0.2.7:51234","method":"GET",` +
		`"host":"example.com","path":"/v1/items?id=3","status":200,"bytes_in":12,"bytes_out":3456,` +
		`"duration":0.001235,"upstream_addr":"10.0.0.1:8080","upstream_duration":0.001100,` +
		`"attempts":2,"upstream_error":"reset","route":"api","pool":"web","request_id":"3f2a9c1d0b8e7a65"}` + "\n"
	if got := out.String(); got != want {
		t.Errorf("line =\n%s\nwant\n%s", got, want)
	}
}

func TestRemoteAddr(t *testing.T) {
	tests := []struct {
		name string
		give netip.AddrPort
		want string
	}{
		{"ipv4", netip.MustParseAddrPort("192.0.2.7:80"), "192.0.2.7:80"},
		{"ipv4 in 16 bytes", netip.AddrPortFrom(netip.AddrFrom16(netip.MustParseAddr("192.0.2.7").As16()), 80), "192.0.2.7:80"},
		{"ipv6", netip.MustParseAddrPort("[2001:db8::1]:443"), "[2001:db8::1]:443"},
		{"unset", netip.AddrPort{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Entry{Remote: tt.give}
			var got map[string]any
			if err := json.Unmarshal(appendEntry(nil, e), &got); err != nil {
				t.Fatal(err)
			}
			if got["remote_addr"] != tt.want {
				t.Errorf("remote_addr = %v, want %s", got["remote_addr"], tt.want)
			}
		})
	}
}

func TestEscaping(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{"plain", "/index.html"},
		{"quotes and backslash", `/a"b\c`},
		{"forged line", "/x\n{\"status\":200}\r\n"},
		{"control chars", "/\x00\x01\x1b[31m\x7f\t"},
		{"invalid utf8", "/\xff\xfe\xc3"},
		{"truncated rune", "/caf\xc3"},
		{"overlong", "/\xc0\xaf"},
		{"surrogate", "/\xed\xa0\x80"},
		{"valid multibyte", "/café/日本/😀"},
		{"line separators", "/\u2028\u2029"},
		{"html", "/<script>&"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Entry{}
			fill(e, tt.give)
			e.Host = append(e.Host[:0], tt.give...)
			line := appendEntry(nil, e)
			if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
				t.Fatalf("appendEntry() = %q, want one line", line)
			}
			if !json.Valid(line) {
				t.Fatalf("appendEntry() = %q, not valid JSON", line)
			}
			for _, c := range line[:len(line)-1] {
				if c < 0x20 || c == 0x7f {
					t.Fatalf("appendEntry() = %q holds raw control byte %#x", line, c)
				}
			}
			var got map[string]any
			if err := json.Unmarshal(line, &got); err != nil {
				t.Fatal(err)
			}
			// encoding/json also turns each invalid byte into U+FFFD.
			want := decodeMarshal(t, tt.give)
			if got["path"] != want || got["host"] != want {
				t.Errorf("path, host = %q, %q, want %q", got["path"], got["host"], want)
			}
		})
	}
}

func decodeMarshal(t testing.TB, s string) string {
	t.Helper()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzAppendString: whatever bytes a client sends, the output is valid
// JSON that decodes to what encoding/json makes of the same bytes.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "/a", "\"\\\n", "\xff", "\u2028", "é\xc3", "\x7f"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := appendString(nil, in)
		if !json.Valid(out) {
			t.Fatalf("appendString(%q) = %q, not valid JSON", in, out)
		}
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if want := decodeMarshal(t, string(in)); got != want {
			t.Errorf("appendString(%q) decodes to %q, want %q", in, got, want)
		}
		if s := appendString(nil, string(in)); !bytes.Equal(s, out) {
			t.Errorf("string and []byte encodings differ: %q, %q", s, out)
		}
	})
}

func TestSampled(t *testing.T) {
	const n = 100_000
	tests := []struct {
		name     string
		give     config.AccessLog
		want     float64 // share logged
		tolerate float64
	}{
		{"zero", enabled(0), 0, 0},
		{"one", enabled(1), 1, 0},
		{"half", enabled(0.5), 0.5, 0.01},
		{"one percent", enabled(0.01), 0.01, 0.002},
		{"disabled", config.AccessLog{Path: "stdout", Sample: 1}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLogger(t, tt.give, &syncBuffer{})
			rnd := rand.New(rand.NewPCG(1, 2))
			got := 0
			for range n {
				if l.Sampled(rnd.Uint64()) {
					got++
				}
			}
			if share := float64(got) / n; share < tt.want-tt.tolerate || share > tt.want+tt.tolerate {
				t.Errorf("Sampled() share = %v, want %v ± %v", share, tt.want, tt.tolerate)
			}
		})
	}
	// The edges of the range.
	l, _ := newLogger(t, enabled(0), &syncBuffer{})
	if l.Sampled(0) {
		t.Error("sample 0: Sampled(0) = true, want false")
	}
	l, _ = newLogger(t, enabled(1), &syncBuffer{})
	if !l.Sampled(^uint64(0)) {
		t.Error("sample 1: Sampled(max) = false, want true")
	}
	var nilLogger *Logger
	nilLogger.Submit(nilLogger.Acquire())
	if nilLogger.Sampled(0) || nilLogger.Close() != nil || nilLogger.Reopen() != nil {
		t.Error("nil Logger is not a no-op")
	}
}

// TestSampledEndToEnd: what Sampled admits is what gets written.
func TestSampledEndToEnd(t *testing.T) {
	for _, sample := range []float64{0, 0.5, 1} {
		var out syncBuffer
		l, c := newLogger(t, enabled(sample), &out)
		rnd := rand.New(rand.NewPCG(3, 4))
		want := 0
		for i := range 2000 {
			if !l.Sampled(rnd.Uint64()) {
				continue
			}
			want++
			e := l.Acquire()
			fill(e, "/"+string(rune('a'+i%26)))
			l.Submit(e)
			if i%256 == 0 {
				time.Sleep(time.Millisecond) // let the writer keep up
			}
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close() error = %v", err)
		}
		if got := len(lines(t, out.String())) + int(c.n.Load()); got != want {
			t.Errorf("sample %v: written + dropped = %d, want %d", sample, got, want)
		}
		if sample == 0 && out.String() != "" {
			t.Errorf("sample 0 wrote %q", out.String())
		}
	}
}

func TestCloseFlushes(t *testing.T) {
	var out syncBuffer
	l, c := newLogger(t, enabled(1), &out)
	const n = 3000 // below the queue size: nothing may drop
	for range n {
		e := l.Acquire()
		fill(e, "/flush")
		l.Submit(e)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if got := len(lines(t, out.String())); got != n || c.n.Load() != 0 {
		t.Errorf("after Close: %d lines, %d dropped; want %d, 0", got, c.n.Load(), n)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close() error = %v", err)
	}
	// After Close a submit is a counted drop, not a panic or a leak.
	e := l.Acquire()
	fill(e, "/late")
	l.Submit(e)
	if c.n.Load() != 1 {
		t.Errorf("submit after Close: dropped = %d, want 1", c.n.Load())
	}
	if err := l.Reopen(); err != nil {
		t.Errorf("Reopen() on stdout after Close = %v, want nil", err)
	}
}

func TestFlushesWithoutClose(t *testing.T) {
	var out syncBuffer
	l, _ := newLogger(t, enabled(1), &out)
	e := l.Acquire()
	fill(e, "/soon")
	l.Submit(e)
	deadline := time.Now().Add(5 * time.Second)
	for out.String() == "" {
		if time.Now().After(deadline) {
			t.Fatal("line not flushed within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
	syncBuffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return w.syncBuffer.Write(p)
}

func TestBlockedWriterNeverBlocksSubmit(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
	var c counter
	l, err := New(enabled(1), w, c.inc)
	if err != nil {
		t.Fatal(err)
	}
	// Enough to fill the bufio buffer, the queue and then some.
	const n = 3 * queueSize
	var slowest time.Duration
	for i := range n {
		start := time.Now()
		e := l.Acquire()
		fill(e, "/blocked")
		l.Submit(e)
		slowest = max(slowest, time.Since(start))
		if i == bufferSize/300 {
			// Make sure the writer is stuck before the queue fills.
			select {
			case <-w.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("writer never wrote")
			}
		}
	}
	if c.n.Load() == 0 {
		t.Error("dropped = 0 with the writer blocked, want drops")
	}
	// A generous bound: the point is that Submit does not wait for the
	// writer (which would be forever).
	if slowest > time.Second {
		t.Errorf("slowest Submit took %v", slowest)
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	written := len(lines(t, w.String()))
	if got := written + int(c.n.Load()); got != n {
		t.Errorf("written %d + dropped %d = %d, want %d", written, c.n.Load(), got, n)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

var errDiskFull = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errDiskFull }

func TestWriteErrorsCountAsDrops(t *testing.T) {
	var c counter
	l, err := New(enabled(1), failingWriter{}, c.inc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for range n {
		e := l.Acquire()
		fill(e, "/lost")
		l.Submit(e)
	}
	if err := l.Close(); !errors.Is(err, errDiskFull) {
		t.Errorf("Close() = %v, want %v", err, errDiskFull)
	}
	if c.n.Load() != n {
		t.Errorf("dropped = %d, want %d", c.n.Load(), n)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	var c counter
	l, err := New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, c.inc)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	submit := func(p string, n int) {
		for range n {
			e := l.Acquire()
			fill(e, p)
			l.Submit(e)
		}
	}
	submit("/before", 10)
	// logrotate: rename, then signal.
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen() error = %v", err)
	}
	submit("/after", 5)
	if err := l.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if err := l.Reopen(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reopen() after Close = %v, want ErrClosed", err)
	}
	check := func(file, wantPath string, want int) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got := lines(t, string(b))
		if len(got) != want {
			t.Fatalf("%s has %d lines, want %d", filepath.Base(file), len(got), want)
		}
		for _, m := range got {
			if m["path"] != wantPath {
				t.Errorf("%s has path %v, want %s", filepath.Base(file), m["path"], wantPath)
			}
		}
	}
	check(rotated, "/before", 10)
	check(path, "/after", 5)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("new file mode = %v, %v, want 0640", fi.Mode().Perm(), err)
	}
	if c.n.Load() != 0 {
		t.Errorf("dropped = %d, want 0", c.n.Load())
	}
}

func TestReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "access.log")
	if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The directory goes away: the new file cannot be created.
	if err := os.Rename(filepath.Dir(path), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen() into a missing directory = nil, want an error")
	}
	e := l.Acquire()
	fill(e, "/still")
	l.Submit(e)
	if err := l.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "moved", "access.log"))
	if err != nil || !strings.Contains(string(b), "/still") {
		t.Errorf("old file = %q, %v; want the line written after the failed Reopen", b, err)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(config.AccessLog{Enabled: true, Path: filepath.Join(t.TempDir(), "no", "such", "dir", "x.log")}, nil, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New() with a missing directory = %v, want ErrNotExist", err)
	}
	if _, err := New(enabled(1), nil, nil); err == nil {
		t.Error("New() to stdout with a nil writer = nil error, want one")
	}
	// Disabled: no file is opened, nothing is started.
	l, err := New(config.AccessLog{Path: "/no/such/dir/x.log"}, nil, nil)
	if err != nil {
		t.Fatalf("New(disabled) error = %v", err)
	}
	e := l.Acquire()
	fill(e, "/disabled")
	l.Submit(e)
	if err := l.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
}

func TestConcurrentSubmit(t *testing.T) {
	var out syncBuffer
	l, c := newLogger(t, enabled(1), &out)
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 0))
			for range each {
				if !l.Sampled(rnd.Uint64()) {
					continue
				}
				e := l.Acquire()
				fill(e, "/concurrent")
				l.Submit(e)
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			_ = l.Reopen()
		}
	}()
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := lines(t, out.String())
	if len(got)+int(c.n.Load()) != workers*each {
		t.Errorf("written %d + dropped %d, want %d", len(got), c.n.Load(), workers*each)
	}
	for _, m := range got {
		if m["path"] != "/concurrent" || m["request_id"] != "3f2a9c1d0b8e7a65" {
			t.Fatalf("corrupted line %v", m)
		}
	}
}

// stalledFIFO makes a FIFO whose reader opens it and never reads, so
// that writes to it block once the pipe is full (a stalled log shipper).
func stalledFIFO(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return path
}

// fillPipe submits lines until the writer is surely blocked on the pipe
// (far more than its 64 KiB buffer and the pipe's hold).
func fillPipe(l *Logger) {
	long := strings.Repeat("p", 900)
	for range 2000 {
		e := l.Acquire()
		fill(e, "/"+long)
		l.Submit(e)
	}
	time.Sleep(300 * time.Millisecond) // past flushEvery: the writer is in a write
}

// TestStuckWriterBounded: a log output that stops taking bytes cannot
// hold a reload, SIGUSR1 or shutdown: Reopen and Close give up in time
// and report it, and closing the file under the writer ends its write.
func TestStuckWriterBounded(t *testing.T) {
	path := stalledFIFO(t)
	l, err := New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	fillPipe(l)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.ReopenContext(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReopenContext() on a stuck writer = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ReopenContext took %v, want about 200ms", d)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	start = time.Now()
	if err := l.CloseContext(ctx2); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CloseContext() on a stuck writer = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("CloseContext took %v, want about 300ms", d)
	}
	select {
	case <-l.done: // the file closed under it ended the write: no goroutine left
	case <-time.After(2 * time.Second):
		t.Fatal("the writer goroutine is still blocked after CloseContext")
	}
}

// TestFIFOWithoutReader: an access log path that is a FIFO nobody reads
// fails to open with a clear error instead of blocking (at startup, on a
// reload or on SIGUSR1).
func TestFIFOWithoutReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nobody.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		l, err := New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, nil)
		if err == nil {
			l.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "FIFO with no reader") {
			t.Errorf("New() = %v, want a \"FIFO with no reader\" error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("New() blocked on a FIFO with no reader")
	}
}
