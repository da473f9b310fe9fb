package netconn

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestDrainEndsSplicedWait: Listener.Drain from another goroutine,
// at varied points against a spliced answer that keeps the connection
// (before its write, during the step's splice, during its wait), ends
// that answer's wait for the next request: the write returns whole at
// once, as an awaited Write does (TestDrainEndsWaitBeingArmed). Run it
// under -race.
func TestDrainEndsSplicedWait(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	tries := 300
	if testing.Short() {
		tries = 50
	}
	body := pattern(40 << 10)
	r, w := testPipe(t, 128<<10)
	for i := range tries {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nl := NewListener(ln)
		nl.IdleTimeout = time.Minute
		srv, client := dialAccept(t, nl, nil)
		sendRequest(t, srv, client, req)
		if k, err := syscall.Write(w, body); err != nil || k != len(body) {
			t.Fatalf("pipe write: %d, %v", k, err)
		}
		srv.AwaitNextRequest(false)
		holdHead(t, srv)
		start := make(chan struct{})
		done := make(chan writeResult, 1)
		go func() {
			<-start
			n, err := srv.WriteFromPipe([]byte("p"), r, len(body), true)
			done <- writeResult{n, err}
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			<-start
			spin(i % 100 * 50)
			_ = nl.Drain()
		}()
		close(start)
		answered(t, client, "HTTP/1.1 200 OK\r\n\r\np"+string(body))
		<-drained
		select {
		case res := <-done:
			if res.err != nil || res.n != 1+len(body) {
				t.Fatalf("try %d: WriteFromPipe() = %d, %v", i, res.n, res.err)
			}
		case <-time.After(2 * time.Second):
			client.Close()
			<-done
			srv.Close()
			t.Fatalf("try %d: the spliced answer still waited 2 s after Drain", i)
		}
		client.Close()
		srv.Close()
	}
}
