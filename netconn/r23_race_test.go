package netconn

import (
	"errors"
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"
)

// r23Blocked runs op, an operation that blocks, on another goroutine and
// reports its error on the returned channel.
func r23Blocked(op func() error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- op() }()
	return done
}

// TestDeadlinesFromAnotherGoroutine: while a Read or a Write is
// blocked, another goroutine sets a random series of deadlines, each
// still ahead when the next is set. The operation must fail with a
// deadline error at the last one set: not before it (an early timer is
// re-armed), and not long after (no hang). Server Conns (a Listener's,
// with and without client timeouts) and client Conns (New).
func TestDeadlinesFromAnotherGoroutine(t *testing.T) {
	kinds := []string{"server read", "server read timeouts", "client read", "server write", "client write"}
	r23RunKinds(t, r23Seed(t), 6, kinds, r23DeadlineCase)
}

// r23RunKinds runs one case of each kind at a time, rounds times, with
// seeds drawn from seed, and reports every failure the cases return.
func r23RunKinds(t *testing.T, seed int64, rounds int, kinds []string, run func(*testing.T, string, int64) string) {
	rng := rand.New(rand.NewSource(seed))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for range rounds {
		for _, kind := range kinds {
			seed := rng.Int63()
			wg.Go(func() {
				if msg := run(t, kind, seed); msg != "" {
					mu.Lock()
					errs = append(errs, msg)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	for _, e := range errs {
		t.Error(e)
	}
}

func r23DeadlineCase(t *testing.T, kind string, seed int64) string {
	rng := rand.New(rand.NewSource(seed))
	_, srv, client := listenerPair(t, func(nl *Listener) {
		if kind == "server read timeouts" {
			// Client timeouts far off: the deadlines set are what count.
			nl.ReadTimeout, nl.WriteTimeout, nl.IdleTimeout = time.Minute, time.Minute, time.Minute
		}
	})
	var c *Conn
	var op func() error
	switch kind {
	case "server read", "server read timeouts":
		c = srv
		op = func() error { _, err := c.Read(make([]byte, 100)); return err }
	case "client read":
		c = New(client)
		op = func() error { _, err := c.Read(make([]byte, 100)); return err }
	case "server write":
		c = srv
		op = func() error {
			buf := make([]byte, 1<<20)
			for {
				if _, err := c.Write(buf); err != nil {
					return err
				}
			}
		}
	case "client write":
		c = New(client)
		op = func() error {
			buf := make([]byte, 1<<20)
			for {
				if _, err := c.Write(buf); err != nil {
					return err
				}
			}
		}
	}
	read := kind != "server write" && kind != "client write"
	set := c.SetWriteDeadline
	if read {
		set = c.SetReadDeadline
	}
	start := time.Now()
	// A first deadline, armed before the operation starts.
	_ = set(start.Add(time.Duration(100+rng.Intn(200)) * time.Millisecond))
	done := r23Blocked(op)
	var last time.Time
	at := time.Duration(0)
	for i := 0; i < 1+rng.Intn(6); i++ {
		at += time.Duration(rng.Intn(20)) * time.Millisecond
		time.Sleep(time.Until(start.Add(at)))
		var d time.Time
		switch rng.Intn(5) {
		case 0:
			// cleared (zero)
		default:
			d = time.Now().Add(time.Duration(60+rng.Intn(300)) * time.Millisecond)
		}
		_ = set(d)
		last = d
	}
	if last.IsZero() {
		last = time.Now().Add(150 * time.Millisecond)
		_ = set(last)
	}
	select {
	case err := <-done:
		now := time.Now()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return kind + ": error " + err.Error() + ", want a deadline error"
		}
		if now.Before(last.Add(-time.Millisecond)) {
			return kind + ": failed " + last.Sub(now).String() + " before the last deadline set"
		}
	case <-time.After(time.Until(last) + 3*time.Second):
		c.Conn.Close()
		<-done
		return kind + ": still blocked 3 s after the last deadline"
	}
	return ""
}

// TestCloseRacesBlockedOps: Close from another goroutine, at a
// random moment, ends a blocked Read, Write, awaiting Write (the wait for
// the next request inside the write of an answer, AwaitNextRequest), a
// client's request write that waits for the response (NewClient), and a
// lingering close's drain; nothing hangs, nothing races.
func TestCloseRacesBlockedOps(t *testing.T) {
	kinds := []string{"read", "write", "await", "client wait", "linger read"}
	r23RunKinds(t, r23Seed(t)+1, 8, kinds, r23CloseCase)
}

func r23CloseCase(t *testing.T, kind string, seed int64) string {
	rng := rand.New(rand.NewSource(seed))
	_, srv, client := listenerPair(t, func(nl *Listener) {
		nl.ReadTimeout, nl.WriteTimeout, nl.IdleTimeout = time.Minute, time.Minute, time.Minute
	})
	var closer interface{ Close() error } = srv
	var op func() error
	switch kind {
	case "read":
		op = func() error { _, err := srv.Read(make([]byte, 100)); return err }
	case "write":
		op = func() error {
			buf := make([]byte, 1<<20)
			for {
				if _, err := srv.Write(buf); err != nil {
					return err
				}
			}
		}
	case "await":
		if _, err := client.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			return err.Error()
		}
		if _, err := srv.Read(make([]byte, 4096)); err != nil {
			return err.Error()
		}
		srv.AwaitNextRequest(true)
		op = func() error { _, err := srv.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")); return err }
	case "client wait":
		up := NewClient(client, 4096)
		closer = up
		op = func() error {
			if _, err := up.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
				return err
			}
			_, err := up.Read(make([]byte, 100))
			return err
		}
	case "linger read":
		if _, err := client.Write([]byte("POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\nxx")); err != nil {
			return err.Error()
		}
		if _, err := srv.Read(make([]byte, 4096)); err != nil {
			return err.Error()
		}
		srv.LingerOnClose()
		// The lingering Close blocks draining; a second Close from
		// another goroutine ends it.
		op = func() error { return srv.Close() }
		closer = srv.Conn
	}
	done := r23Blocked(op)
	time.Sleep(time.Duration(rng.Intn(20000)) * time.Microsecond)
	closed := time.Now()
	_ = closer.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		client.Close()
		srv.Conn.Close()
		<-done
		return kind + ": still blocked 2 s after Close"
	}
	if kind != "linger read" && time.Since(closed) > time.Second {
		return kind + ": took " + time.Since(closed).String() + " after Close"
	}
	if c, ok := closer.(*Conn); ok {
		_ = c.Close() // a second Close is harmless
	}
	return ""
}
