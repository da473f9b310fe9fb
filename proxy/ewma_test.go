package proxy

import (
	"net"
	"sync/atomic"
	"testing"
)

// deadBackend is a listener that takes connections and fails them: at once
// (closed: the exchange ends in a reset or EOF) or never (silent: the
// response times out). It counts the connections it took.
type deadBackend struct {
	ln       net.Listener
	accepted atomic.Int64
}

func startDeadBackend(t *testing.T, silent bool) *deadBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &deadBackend{ln: ln}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			d.accepted.Add(1)
			if silent {
				held = append(held, c)
			} else {
				c.Close()
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return d
}

// TestEWMAShunsFailingBackend: under ewma a backend whose attempts fail
// (reset at once, or no answer within timeouts.response) scores as one
// that took the whole response timeout, so it loses the draws that
// follow; with no sample from a failure it would keep a score of 0 and
// win every draw.
func TestEWMAShunsFailingBackend(t *testing.T) {
	tests := []struct {
		name   string
		silent bool
	}{
		{"reset at once", false},
		{"no answer", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := startBackend(t, "good", nil)
			dead := startDeadBackend(t, tt.silent)
			px := startProxy(t, "timeouts: {response: 200ms}\nroutes:\n  - pool: p\npools:\n  p:\n    algorithm: ewma\n    backends:\n"+
				"      - {address: "+good.addr()+"}\n      - {address: "+dead.ln.Addr().String()+"}\n")
			c := testClient(t)
			const n = 30
			failed := 0
			for range n {
				if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
					failed++ // a timeout is not retried: 504
				}
			}
			// The first draw may go to the dead backend (no samples yet);
			// after its failure it should lose every draw for far longer
			// than this test takes. One attempt may open more than one
			// connection: a close seen before the request goes out is
			// retried on a new connection (maxIdleRetries).
			if a := dead.accepted.Load(); a > 2*maxIdleRetries {
				t.Errorf("failing backend took %d connections over %d requests, want at most %d", a, n, 2*maxIdleRetries)
			}
			if h := good.hits.Load(); h+int64(failed) != n || failed > 2 {
				t.Errorf("good backend answered %d of %d, %d failed; want all but at most 2", h, n, failed)
			}
		})
	}
}
