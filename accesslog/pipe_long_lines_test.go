package accesslog

import (
	"encoding/json"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Found by review. What was wrong: README (Command line, Workers): "When the access log goes to a
// pipe (path: stdout under docker, a FIFO), each write is at most 4 KiB
// of whole lines, which a pipe takes at once, so the workers' lines are
// never spliced together." A line longer than the 4 KiB pipe buffer goes
// out in one write of its whole length (write, accesslog.go:389: the
// buffer is flushed first, then bufio.Writer hands an oversize line
// straight to the file), which is over PIPE_BUF: the kernel may split
// it, and another worker's lines land inside it. A client makes such a
// line at will: a path of 5,000 bytes fits the default 8 KiB head limit
// (and each invalid UTF-8 byte is escaped to 6). Here two loggers (two
// workers) share one pipe, each writing 5 KiB lines: lines read back are
// spliced and are not JSON. Expected: every line read is one whole JSON
// object. Fix: cap a line at pipeBufferSize when out is a pipe (shorten
// the client's fields, path first, marking the cut), so every write
// stays at most PIPE_BUF.
func TestAccessLogLongLinesNotSplicedOnPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_ = r.SetReadDeadline(time.Now().Add(20 * time.Second))
	// One page of pipe: a write over it is always taken in parts, as a
	// full pipe under load takes it.
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, w.Fd(), 1031 /* F_SETPIPE_SZ */, 4096); errno != 0 {
		t.Skip("F_SETPIPE_SZ:", errno)
	}
	var lines []string
	read := make(chan struct{})
	go func() {
		defer close(read)
		var all []byte
		buf := make([]byte, 1024)
		for {
			n, err := r.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				break
			}
			time.Sleep(50 * time.Microsecond) // a reader a little behind
		}
		for _, l := range strings.SplitAfter(string(all), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}()
	const perWorker = 40
	var wg sync.WaitGroup
	for worker := range 2 {
		// Each worker has its own descriptor of the pipe (a process of
		// its own); one *os.File would serialise the writes in Go.
		fd, err := syscall.Dup(int(w.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		out := os.NewFile(uintptr(fd), "worker stdout")
		l, err := New(enabled(1), out, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				e := l.Acquire()
				fill(e, "/"+strings.Repeat(string(rune('a'+worker)), 5000))
				l.Submit(e)
			}
			if err := l.Close(); err != nil {
				t.Error(err)
			}
			out.Close()
		}()
	}
	wg.Wait()
	w.Close()
	<-read
	bad := 0
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			bad++
		}
	}
	if bad > 0 || len(lines) != 2*perWorker {
		t.Errorf("read %d lines, %d of them not one JSON object (spliced with another worker's), want %d whole lines", len(lines), bad, 2*perWorker)
	}
}
