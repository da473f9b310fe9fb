package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// resetBackend reads one request head per connection, records its X-Seq
// and resets the connection before any answer: a failure that an
// idempotent request is retried on, on another backend.
type resetBackend struct {
	addr string
	mu   sync.Mutex
	seen map[string]int // X-Seq -> times this backend got it
}

func startResetBackend(t *testing.T) *resetBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	b := &resetBackend{addr: ln.Addr().String(), seen: map[string]int{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				seq := ""
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if v, ok := strings.CutPrefix(strings.ToLower(line), "x-seq:"); ok {
						seq = strings.TrimSpace(v)
					}
					if line == "\r\n" {
						break
					}
				}
				b.mu.Lock()
				b.seen[seq]++
				b.mu.Unlock()
				_ = c.(*net.TCPConn).SetLinger(0)
			}()
		}
	}()
	return b
}

// TestLBRetryNeverRepeatsBackend: README (Retries): a retry goes
// to "one this request has not tried yet, as nginx's proxy_next_upstream
// never tries a peer twice". A pool of four backends that reset every
// GET and one that answers, with retries.attempts 5 (one per backend):
// every request must reach the working one (200), and no resetting
// backend may see one request twice, for every algorithm, with the
// resetting backends weighted heavily so that the picker keeps drawing
// tried ones, under concurrent load. Holds.
func TestLBRetryNeverRepeatsBackend(t *testing.T) {
	for _, alg := range []string{"round_robin", "random", "least_conn", "p2c", "ewma", "ring_hash", "maglev", "sticky"} {
		t.Run(alg, func(t *testing.T) {
			good := startBackend(t, "good", nil)
			var resetters []*resetBackend
			addrs := []string{}
			weights := []int{}
			for range 4 {
				r := startResetBackend(t)
				resetters = append(resetters, r)
				addrs = append(addrs, r.addr)
				weights = append(weights, 5)
			}
			addrs = append(addrs, good.addr())
			weights = append(weights, 1)
			y := "retries: { attempts: 5 }\n" + strings.Replace(retryYAML(alg, addrs, weights, ""), "hash_key: path", "hash_key: header:X-Key", 1)
			px := startProxy(t, y)
			c := testClient(t)
			const workers, perWorker = 6, 25
			var bad atomic.Int64
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range perWorker {
						seq := fmt.Sprintf("%d-%d", w, i)
						key := seq
						if i%3 == 0 {
							key = "fixed" // one key for many requests
						}
						req, _ := http.NewRequest(http.MethodGet, "http://"+px.addr+"/x", nil)
						req.Header.Set("X-Seq", seq)
						req.Header.Set("X-Key", key)
						resp, err := c.Do(req)
						if err != nil {
							t.Errorf("request %s: %v", seq, err)
							bad.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							bad.Add(1)
							if bad.Load() <= 3 {
								t.Errorf("request %s: status %d, want 200 (5 attempts over 5 backends, none tried twice)", seq, resp.StatusCode)
							}
						}
					}
				})
			}
			wg.Wait()
			for i, r := range resetters {
				r.mu.Lock()
				for seq, n := range r.seen {
					if n > 1 {
						t.Errorf("resetting backend %d got request %s %d times, want at most once", i, seq, n)
					}
				}
				r.mu.Unlock()
			}
			if n := bad.Load(); n > 0 {
				t.Errorf("%d of %d requests failed", n, workers*perWorker)
			}
			if got := good.hits.Load(); got != workers*perWorker {
				t.Errorf("working backend hits = %d, want %d", got, workers*perWorker)
			}
		})
	}
}

// TestLBLoadAwareFavoursFaster: README (Balancing algorithms):
// least_conn sends to the fewest in-flight requests, p2c to the less
// loaded of two, ewma to the lower latency × (in-flight + 1). Under real
// concurrent load through the proxy, of two backends of equal weight, one
// answering at once and one after 20 ms, the fast one must take most of
// the requests (a closed loop of 12 clients: equal shares would mean the
// algorithm ignored load). round_robin, as a control, shares evenly.
// Holds.
func TestLBLoadAwareFavoursFaster(t *testing.T) {
	for _, tc := range []struct {
		alg      string
		minRatio float64 // fast hits / slow hits at least
		maxRatio float64 // and at most (0: no bound)
	}{
		{"least_conn", 3, 0},
		{"p2c", 3, 0},
		{"ewma", 3, 0},
		{"round_robin", 0.9, 1.1},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			fast := startBackend(t, "fast", nil)
			slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(20 * time.Millisecond)
			})
			px := startProxy(t, retryYAML(tc.alg, []string{fast.addr(), slow.addr()}, nil, ""))
			c := testClient(t)
			deadline := time.Now().Add(800 * time.Millisecond)
			var wg sync.WaitGroup
			for range 12 {
				wg.Go(func() {
					for time.Now().Before(deadline) {
						if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
							t.Errorf("status %d, want 200", code)
							return
						}
					}
				})
			}
			wg.Wait()
			f, s := float64(fast.hits.Load()), float64(slow.hits.Load())
			t.Logf("fast %v slow %v", f, s)
			if s == 0 {
				s = 0.5
			}
			if f/s < tc.minRatio || (tc.maxRatio > 0 && f/s > tc.maxRatio) {
				t.Errorf("fast/slow hits = %.0f/%.0f = %.2f, want in [%v, %v]", f, s, f/s, tc.minRatio, tc.maxRatio)
			}
		})
	}
}

// TestLBSwapHidesBackend: README (Balancing algorithms, Draining):
// a backend drained through the admin API, set to weight 0, or removed by
// a reload "gets no new request from the next snapshot on". Under
// concurrent load (run with -race), every request sent after the call
// that takes a backend out returned must miss it, for every algorithm;
// and a pool left with no backend answers 503 with Retry-After, without
// a panic. Holds.
func TestLBSwapHidesBackend(t *testing.T) {
	for _, alg := range []string{"round_robin", "random", "least_conn", "p2c", "ewma", "ring_hash", "maglev", "sticky"} {
		t.Run(alg, func(t *testing.T) {
			var out atomic.Bool
			var violations atomic.Int64
			a, c := startBackend(t, "a", nil), startBackend(t, "c", nil)
			b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Probe") != "" && out.Load() {
					violations.Add(1)
				}
			})
			yml := func(addrs ...string) string {
				return strings.Replace(retryYAML(alg, addrs, nil, ""), "hash_key: path", "hash_key: header:X-Key", 1)
			}
			full := yml(a.addr(), b.addr(), c.addr())
			px := startProxy(t, full)
			ctx := t.Context()
			cl := testClient(t)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						get(t, cl, "http://"+px.addr+"/", map[string]string{"X-Key": fmt.Sprint(w, i)})
					}
				})
			}
			probe := func(round int) {
				for i := range 8 {
					code, got, _ := get(t, cl, "http://"+px.addr+"/", map[string]string{"X-Probe": "1", "X-Key": fmt.Sprint("p", round, i)})
					if code != 200 || got == "b" {
						t.Errorf("round %d: probe got %d from %q, want 200 from a or c", round, code, got)
					}
				}
			}
			for round := range 12 {
				switch round % 3 {
				case 0:
					if err := px.ctrl.SetDrain(ctx, "p", b.addr(), true); err != nil {
						t.Fatal(err)
					}
					out.Store(true)
					probe(round)
					out.Store(false)
					if err := px.ctrl.SetDrain(ctx, "p", b.addr(), false); err != nil {
						t.Fatal(err)
					}
				case 1:
					if err := px.ctrl.SetWeight(ctx, "p", b.addr(), 0); err != nil {
						t.Fatal(err)
					}
					out.Store(true)
					probe(round)
					out.Store(false)
					if err := px.ctrl.SetWeight(ctx, "p", b.addr(), 1); err != nil {
						t.Fatal(err)
					}
				case 2:
					apply(t, px, yml(a.addr(), c.addr()))
					out.Store(true)
					probe(round)
					out.Store(false)
					apply(t, px, full)
				}
			}
			// Every backend drained: 503 with Retry-After, then back.
			for _, x := range []*testBackend{a, b, c} {
				if err := px.ctrl.SetDrain(ctx, "p", x.addr(), true); err != nil {
					t.Fatal(err)
				}
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+px.addr+"/", nil)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Errorf("empty pool: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			for _, x := range []*testBackend{a, b, c} {
				if err := px.ctrl.SetDrain(ctx, "p", x.addr(), false); err != nil {
					t.Fatal(err)
				}
			}
			close(stop)
			wg.Wait()
			if n := violations.Load(); n > 0 {
				t.Errorf("backend taken out got %d probe requests sent after the change returned, want 0", n)
			}
		})
	}
}
