package proxy

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/metrics"
)

// chaosBackend answers keep-alive requests on raw connections and,
// per request at random, misbehaves the ways a backend under churn does:
// closes after its answer (Connection: close), closes the connection a
// moment after answering (its keep-alive timeout racing the next request),
// closes or resets without answering, or answers slowly. It counts the
// connections it has open.
type chaosBackend struct {
	ln    net.Listener
	open  atomic.Int64
	total atomic.Int64
}

func startChaosBackend(t *testing.T, seed uint64) *chaosBackend {
	b := &chaosBackend{}
	var seq atomic.Uint64
	b.ln = serveRaw(t, func(c net.Conn) {
		b.open.Add(1)
		b.total.Add(1)
		defer b.open.Add(-1)
		rng := rand.New(rand.NewPCG(seed, seq.Add(1)))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			switch r := rng.IntN(100); {
			case r < 60:
				if _, err := io.WriteString(c, ok); err != nil {
					return
				}
			case r < 70:
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
				return
			case r < 82:
				_, _ = io.WriteString(c, ok)
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				return
			case r < 87:
				return
			case r < 92:
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			default:
				time.Sleep(time.Duration(5+rng.IntN(15)) * time.Millisecond)
				if _, err := io.WriteString(c, ok); err != nil {
					return
				}
			}
		}
	})
	return b
}

// TestPoolChurnNoSlotLeak: as many clients as
// max_conns_per_backend, each sending keep-alive GETs one at a time, to
// a backend that closes, resets and races its connections at random while
// the controller sweeps them (upstream_idle 40 ms). A request holds at most
// one slot at a time, so none may be answered 503 for the connection limit
// (a slot or an `open` count leaked on some error path would show as one),
// and once the load stops and the idle timeout passes, sluice has no
// connection open, by its own count (sluice_upstream_connections) and by
// the backend's.
func TestPoolChurnNoSlotLeak(t *testing.T) {
	const clients, perClient = 4, 120
	b := startChaosBackend(t, 18)
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes: [{pool: p}]
pools:
  p:
    backends: [{address: %s}]
limits: { max_conns_per_backend: %d }
retries: { attempts: 1 }
timeouts: { response: 2s, upstream_idle: 40ms }
`, b.ln.Addr(), clients), m)

	var mu sync.Mutex
	codes := map[int]int{}
	var bodies503 []string
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			for range perClient {
				resp, err := c.Get("http://" + px.addr + "/")
				if err != nil {
					mu.Lock()
					codes[0]++
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == 503 {
					bodies503 = append(bodies503, strings.TrimSpace(string(body)))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("statuses %v; backend accepted %d connections", codes, b.total.Load())
	if codes[503] > 0 {
		t.Errorf("%d requests got 503 with no more clients than max_conns_per_backend (%v)", codes[503], bodies503[:min(3, len(bodies503))])
	}
	if codes[0] > 0 {
		t.Errorf("%d requests failed at the client", codes[0])
	}
	// With one attempt per request, each failed request is one failed
	// attempt, counted by kind; kind="idle" counts none.
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	if failed := reviewSum(errs) - reviewSum(errs, `kind="idle"`); failed != float64(codes[502]+codes[504]) {
		t.Errorf("sluice_upstream_errors_total other than idle = %v, want %d (the 502s and 504s): %v", failed, codes[502]+codes[504], errs)
	}
	up := px.proxy.Current().pools["p"].targets[0]
	waitFor(t, "sluice to have no upstream connection left", 3*time.Second, func() bool {
		return up.client.ConnsCount() == 0 && b.open.Load() == 0
	})
	key := fmt.Sprintf("pool=%q,backend=%q", "p", b.ln.Addr().String())
	if got := gatherCounts(t, m, "sluice_upstream_connections")[key]; got != 0 {
		t.Errorf("sluice_upstream_connections = %v once idle, want 0", got)
	}
	// Every slot is free again.
	n := 0
	for {
		if _, ok := up.client.freeS.pop(up.client.slots); !ok {
			break
		}
		n++
	}
	if n != clients {
		t.Errorf("%d slots free once idle, want %d", n, clients)
	}
}

// TestPoolReloadChurnNoConnLimit: as many clients as
// max_conns_per_backend send keep-alive GETs while reloads keep giving
// the backend a new upstream client (timeouts.response changes each
// time), the old one draining with its busy connections, which count
// toward the limit. Each client's request holds at most one connection
// at a time, so no request may be answered 503 for the limit, and once
// idle every count is back to nothing.
func TestPoolReloadChurnNoConnLimit(t *testing.T) {
	const clients = 4
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	})
	m := metrics.New("test")
	yml := func(resp int) string {
		return fmt.Sprintf(`routes: [{pool: p}]
pools:
  p:
    backends: [{address: %s}]
limits: { max_conns_per_backend: %d }
retries: { attempts: 1 }
drain_timeout: 5s
timeouts: { response: %dms, upstream_idle: 100ms }
`, b.addr(), clients, resp)
	}
	px := startProxyWith(t, yml(2000), m)
	stop := make(chan struct{})
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for i := 1; i <= 15; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			apply(t, px, yml(2000+i))
		}
	}()
	codes := poolBurst(px.addr, clients, 100)
	close(stop)
	<-reloaded
	t.Logf("statuses %v; backend accepted %d connections", codes, b.conns.Load())
	if codes[200] != clients*100 {
		t.Errorf("statuses %v, want every request 200 (no more clients than max_conns_per_backend)", codes)
	}
	up := px.proxy.Current().pools["p"].targets[0]
	waitFor(t, "no upstream connection left once idle", 3*time.Second, func() bool { return up.client.ConnsCount() == 0 })
	key := fmt.Sprintf("pool=%q,backend=%q", "p", b.addr())
	if got := gatherCounts(t, m, "sluice_upstream_connections")[key]; got != 0 {
		t.Errorf("sluice_upstream_connections = %v once idle, want 0", got)
	}
}
