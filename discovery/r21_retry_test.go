package discovery

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"sluice/config"
)

// Found by review. What was wrong: one lost UDP datagram fails a whole lookup, so the watcher never
// retransmits a query. Go's resolver waits resolv.conf's per-try timeout
// (default 5s, "attempts:2") before it asks again, but Run bounds a lookup
// by the interval clamped to 1s-5s (dns.go NewWatcher/poll), which is never
// more than that per-try timeout: the second try that resolv.conf (and
// glibc, and Go's own net.LookupHost) would make never happens. With the
// default interval of 5s, the first query's loss makes the lookup fail after
// 5s and the set waits for the next lookup another ~5s later; with
// interval: 30s a pool that starts empty (README "If the first lookup fails,
// the pool has no backends yet ... 503") stays so for ~35s. HAProxy's
// resolvers retry after `timeout retry` (1s, resolve_retries 3), c-ares and
// nginx retransmit within a lookup too. Expected: a lookup whose first A
// query is lost still succeeds within its 5s budget (a retry after ~1-2s);
// actual: OnError at 5s ("i/o timeout"), no Update.
func TestLookupSurvivesOneLostQuery(t *testing.T) {
	var aQueries atomic.Int64
	r := startRawDNS(t, func(req *dns.Msg, tcp bool) []byte {
		if !tcp && req.Question[0].Qtype == dns.TypeA && aQueries.Add(1) == 1 {
			return nil // the first A query is lost on the way
		}
		return mustPack(t, aReply(req, "10.0.0.1"))
	})
	cfg := config.DNSDiscovery{Name: "api.test.", Port: 80, Type: "A", Interval: DefaultInterval, Resolver: r.addr}
	rec := watch(t, cfg, zerolog.Nop())
	start := time.Now()
	select {
	case u := <-rec.updates:
		checkUpdate(t, u, []Backend{b("10.0.0.1:80", 1)})
		t.Logf("first update after %v, %d A queries", time.Since(start), aQueries.Load())
	case err := <-rec.errs:
		t.Fatalf("first lookup failed after %v with one lost query (%d A queries sent): %v",
			time.Since(start), aQueries.Load(), err)
	case <-time.After(6 * time.Second):
		t.Fatal("neither an update nor a failure within 6s")
	}
}
