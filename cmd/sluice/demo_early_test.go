package main

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestDemoEarlyReturnEnds: a demo that cannot start returns instead of
// waiting for its upstreams' Serve goroutines, which may not have taken
// their listeners yet (found by review: a -race run hung 600 s there). A
// listen address the config refuses returns right after the upstreams
// start; a taken port, after serve fails.
func TestDemoEarlyReturnEnds(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for i := range 40 {
		listen := "not-an-address"
		if i%2 == 1 {
			listen = taken.Addr().String()
		}
		done := make(chan int, 1)
		go func() {
			done <- run(context.Background(), []string{"demo", "-listen", listen, "-admin", freePort(t)}, io.Discard, io.Discard)
		}()
		select {
		case code := <-done:
			if code == 0 {
				t.Fatalf("demo on a taken port exited 0")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("demo on a taken port did not return")
		}
	}
}
