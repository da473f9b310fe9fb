package health

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// endlessHeadBackend answers every probe with a status line and then
// header lines without end, a line every few ms, until the probe hangs up.
func endlessHeadBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 1024)
				_, _ = c.Read(buf)
				if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\n")); err != nil {
					return
				}
				line := []byte("X-More: " + strings.Repeat("m", 2000) + "\r\n")
				for {
					if _, err := c.Write(line); err != nil {
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestProbeHeadBounds: reading the final head to its end stays
// bounded: a backend that never ends its head fails the probe with
// "timeout" within the check's timeout (not a hang, not a pass), and a
// large complete head (200 KiB of fields, over the 1 KiB read buffer and
// long field lines included) passes.
func TestProbeHeadBounds(t *testing.T) {
	hc := httpCheck()
	hc.Timeout = 300 * time.Millisecond
	t.Run("never ends", func(t *testing.T) {
		p := newProber(Target{Pool: "p", Addr: endlessHeadBackend(t), Check: hc})
		start := time.Now()
		ok, reason := p.probe(context.Background())
		if d := time.Since(start); d > hc.Timeout+500*time.Millisecond {
			t.Errorf("probe took %v, want about the %v timeout", d, hc.Timeout)
		}
		if ok || reason != "timeout" {
			t.Errorf("probe = %v %q, want false \"timeout\"", ok, reason)
		}
	})
	// The data plane reads a head of up to 16 KiB and answers 502 past
	// it: the probe draws the same line (before session 25 a 200 KiB
	// head passed it, and the backend stayed in rotation).
	for _, tc := range []struct {
		size int
		pass bool
	}{{16 << 10, true}, {16<<10 + 1, false}, {210 << 10, false}} {
		t.Run(fmt.Sprintf("complete head of %d bytes", tc.size), func(t *testing.T) {
			const start, end = "HTTP/1.1 200 OK\r\nX-Big: ", "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
			head := start + strings.Repeat("b", tc.size-len(start)-len(end)) + end
			p := newProber(Target{Pool: "p", Addr: rawBackend(t, head), Check: hc})
			ok, reason := p.probe(context.Background())
			if ok != tc.pass || !ok && reason != "bad response: head over 16 KiB" {
				t.Errorf("probe of a complete %d-byte head = %v %q, want pass %v", len(head), ok, reason, tc.pass)
			}
		})
	}
}
