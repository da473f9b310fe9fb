package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopBoundedByShutdownTimeout: SIGTERM to the real process
// while one client connection holds it the ways the client timeouts
// (60 s here) and the upstream response timeout (60 s) would let it:
// a request head half sent, a body half sent, a request whose backend
// never answers, a 32 MiB answer the client does not read. Each time
// sluice exits 0 within shutdown_timeout (2 s) plus a little, not after
// the 60 s timeouts (passes).
func TestStopBoundedByShutdownTimeout(t *testing.T) {
	hang := make(chan struct{})
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/hang"):
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		case strings.HasPrefix(r.URL.Path, "/big"):
			w.Write(make([]byte, 32<<20))
		default:
			io.WriteString(w, "ok")
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(ln)
	t.Cleanup(func() { close(hang); up.Close() })
	tests := []struct{ name, send string }{
		{"head half sent", "GET / HTTP/1.1\r\nHost: x\r\n"},
		{"body half sent", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"},
		{"backend never answers", "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"answer not read", "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listen, admin := freePort(t), freePort(t)
			path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nshutdown_timeout: 2s\n"+
				"timeouts: {client_read: 60s, client_write: 60s, response: 60s, idle: 90s}\nlog: {level: warn, format: json}\n"+
				"routes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n", listen, admin, ln.Addr()))
			cmd := exec.Command(binary, "-config", path)
			stderr := &syncBuffer{}
			cmd.Stderr = stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			waitReady(t, "http://"+admin+"/readyz")
			c, err := net.Dial("tcp", listen)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
			if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // the request is in sluice (or at the backend)
			start := time.Now()
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				exited <- err
				took := time.Since(start)
				t.Logf("exit %v after %v", err, took)
				if err != nil {
					t.Errorf("exit %v, want status 0\n%s", err, stderr)
				}
				if took > 15*time.Second {
					t.Errorf("stop took %v with shutdown_timeout 2s", took)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("still running 30s after SIGTERM with shutdown_timeout 2s\n%s", stderr)
			}
		})
	}
}
