package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// busyClients keeps keep-alive connections busy with POSTs sent back to
// back, to the address in addr (which the test may change), and counts
// what a graceful stop must never cause: a request written in full on a
// connection that then ends without its response. A POST is not
// idempotent, so a client may not send it again; a connection the proxy
// closes after a response saying "Connection: close" is fine, and so is a
// dial that finds nothing listening.
type busyClients struct {
	addr     atomic.Pointer[string]
	answered atomic.Int64
	lost     atomic.Int64
	mu       sync.Mutex
	losses   []string
}

func (b *busyClients) run(ctx context.Context, n int) (wait func()) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				b.conn(ctx, i)
			}
		}()
	}
	return wg.Wait
}

// conn dials once and sends requests on the connection until it ends.
func (b *busyClients) conn(ctx context.Context, client int) {
	c, err := net.DialTimeout("tcp", *b.addr.Load(), time.Second)
	if err != nil {
		time.Sleep(5 * time.Millisecond)
		return
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ctx.Err() == nil; n++ {
		body := fmt.Sprintf("client %d request %d", client, n)
		req := fmt.Sprintf("POST /post HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			// The request did not go out whole: the connection had
			// ended before it (a close the client could not see yet).
			return
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.lose(fmt.Sprintf("client %d request %d on %s: %v", client, n, c.RemoteAddr(), err))
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.lose(fmt.Sprintf("client %d request %d: status %d, body %v", client, n, resp.StatusCode, err))
			return
		}
		b.answered.Add(1)
		if resp.Close {
			return
		}
	}
}

func (b *busyClients) lose(what string) {
	b.lost.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.losses) < 5 {
		b.losses = append(b.losses, what)
	}
}

// TestGracefulStopLosesNoRequest: a listener moved by a reload, and a
// shutdown, under keep-alive connections busy with back-to-back POSTs.
// Every request written gets its answer; the connections end after an
// answer that says "Connection: close".
func TestGracefulStopLosesNoRequest(t *testing.T) {
	tests := []struct {
		name string
		stop func(t *testing.T, path, listen2 string, render func(string) string, clients *busyClients, cancel context.CancelFunc)
	}{
		{"listener moved", func(t *testing.T, path, listen2 string, render func(string) string, clients *busyClients, _ context.CancelFunc) {
			clients.addr.Store(&listen2)
			replaceFile(t, path, render(listen2))
		}},
		{"shutdown", func(t *testing.T, _, _ string, _ func(string) string, _ *busyClients, cancel context.CancelFunc) {
			cancel()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startElasticBackend(t, "127.0.0.1:0")
			listen1, listen2, admin := freePort(t), freePort(t), freePort(t)
			render := func(listen string) string {
				return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nshutdown_timeout: 5s\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n", listen, admin, up.addr)
			}
			path := writeConfig(t, render(listen1))
			ctx, cancel := context.WithCancel(context.Background())
			exit := make(chan int, 1)
			go func() { exit <- run(ctx, []string{"-config", path}, io.Discard, io.Discard) }()
			defer func() {
				cancel()
				select {
				case <-exit:
				case <-time.After(10 * time.Second):
					t.Error("sluice did not stop")
				}
			}()
			waitReady(t, "http://"+admin+"/readyz")

			clients := &busyClients{}
			clients.addr.Store(&listen1)
			loadCtx, stopLoad := context.WithCancel(context.Background())
			wait := clients.run(loadCtx, 16)
			waitUntil(t, "load flowing", 5*time.Second, func() bool { return clients.answered.Load() > 200 })
			before := clients.answered.Load()
			tt.stop(t, path, listen2, render, clients, cancel)
			time.Sleep(700 * time.Millisecond)
			stopLoad()
			wait()

			if n := clients.lost.Load(); n > 0 {
				t.Errorf("%d requests written got no answer, e.g.\n%s", n, strings.Join(clients.losses, "\n"))
			}
			if clients.answered.Load() <= before {
				t.Errorf("no request answered after the stop began (%d before)", before)
			}
		})
	}
}

// replaceFile replaces the file at path by rename, as editors do.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
