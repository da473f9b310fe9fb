package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: a graceful stop does not close a client connection that is open
// but has not sent a request yet (a browser's preconnect, a load
// balancer's spare connection): README "Zero-downtime restart and
// shutdown" says that once the settle is over "the ones left are taken for
// idle or waiting on a backend. The idle ones are closed", and nginx
// closes such connections at once on a graceful stop (they sit in its
// reusable queue like idle keep-alive ones). fasthttp's Shutdown takes a
// connection that never sent a byte for idle only 5 s after it opened
// (serveConn stores connTime+5s as its idle time), so the stop waits for
// it: here the whole shutdown_timeout (3 s), and it then logs "shutdown
// timed out with requests in flight" with no request in flight.
func TestStopClosesSilentNewConn(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, _, stderr, stop := startStoppable(t, "3s", up.addr)
	c, err := net.DialTimeout("tcp", listen, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(200 * time.Millisecond) // accepted and being served
	took := stop()
	if took > 2*time.Second {
		t.Errorf("stop with one silent new connection took %v, want well under shutdown_timeout (3s): it is idle", took)
	}
	if strings.Contains(stderr.String(), "shutdown timed out") {
		t.Errorf("shutdown logged a timeout with nothing in flight:\n%s", grepLines(stderr.String(), "shutdown timed out"))
	}
}
