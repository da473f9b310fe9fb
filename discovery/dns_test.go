package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"sluice/config"
)

const testInterval = 50 * time.Millisecond

func aConfig(f *fakeDNS, name string, port int) config.DNSDiscovery {
	return config.DNSDiscovery{Name: name, Port: port, Type: "A", Interval: testInterval, Resolver: f.addr}
}

func srvConfig(f *fakeDNS, name string) config.DNSDiscovery {
	return config.DNSDiscovery{Name: name, Type: "SRV", Interval: testInterval, Resolver: f.addr}
}

func b(addr string, weight int) Backend { return Backend{Address: addr, Weight: weight} }

// recorder runs a Watcher and collects what it reports.
type recorder struct {
	updates chan Update
	errs    chan error
}

// watch runs a Watcher for pool "api" until the test ends, and fails the
// test if Run does not return promptly then. Each edit, if any, changes the
// Watcher before it runs.
func watch(t *testing.T, cfg config.DNSDiscovery, log zerolog.Logger, edits ...func(*Watcher)) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{updates: make(chan Update, 16), errs: make(chan error, 1000)}
	w := NewWatcher("api", cfg, WatcherOptions{
		Logger: log,
		OnUpdate: func(u Update) {
			select {
			case r.updates <- u:
			case <-ctx.Done():
			}
		},
		OnError: func(pool string, err error) {
			if pool != "api" {
				t.Errorf("OnError(%q, _), want pool api", pool)
			}
			select {
			case r.errs <- err:
			default:
			}
		},
	})
	for _, edit := range edits {
		edit(w)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

func (r *recorder) next(t *testing.T) Update {
	t.Helper()
	select {
	case u := <-r.updates:
		return u
	case <-time.After(3 * time.Second):
		t.Fatal("no update")
		return Update{}
	}
}

// nextMatching waits up to 3 s for an update with backends want, no error,
// skipping others.
func (r *recorder) nextMatching(t *testing.T, want []Backend) {
	t.Helper()
	deadline := time.After(3 * time.Second)
	var last Update
	for {
		select {
		case u := <-r.updates:
			if u.Pool == "api" && u.Err == nil && slices.Equal(u.Backends, want) {
				return
			}
			last = u
		case <-deadline:
			t.Fatalf("no update with backends %v within 3s; the last was %+v", want, last)
		}
	}
}

// quiet fails the test if an update comes within d.
func (r *recorder) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case u := <-r.updates:
		t.Fatalf("unexpected update %+v", u)
	case <-time.After(d):
	}
}

// nextErr waits for a failed lookup and returns it.
func (r *recorder) nextErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.errs:
		if err == nil {
			t.Fatal("OnError got a nil error")
		}
		return err
	case <-time.After(3 * time.Second):
		t.Fatal("OnError not called")
		return nil
	}
}

func (r *recorder) drainErrs() {
	for {
		select {
		case <-r.errs:
		default:
			return
		}
	}
}

func checkUpdate(t *testing.T, u Update, want []Backend) {
	t.Helper()
	if u.Pool != "api" || u.Err != nil || !slices.Equal(u.Backends, want) {
		t.Fatalf("update = %+v, want pool api, backends %v, no error", u, want)
	}
}

func TestWatcherFollowsARecords(t *testing.T) {
	f := startDNS(t)
	f.setIPs("api.test", "10.0.0.2", "10.0.0.1")
	r := watch(t, aConfig(f, "api.test", 8080), zerolog.Nop())
	checkUpdate(t, r.next(t), []Backend{b("10.0.0.1:8080", 1), b("10.0.0.2:8080", 1)})
	r.quiet(t, 4*testInterval)

	steps := []struct {
		name string
		give []string
		want []Backend // nil: no update expected
	}{
		{
			name: "grows",
			give: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"},
			want: []Backend{b("10.0.0.1:8080", 1), b("10.0.0.2:8080", 1), b("10.0.0.3:8080", 1), b("10.0.0.4:8080", 1)},
		},
		{name: "same set reordered", give: []string{"10.0.0.4", "10.0.0.3", "10.0.0.2", "10.0.0.1"}},
		{name: "shrinks", give: []string{"10.0.0.3"}, want: []Backend{b("10.0.0.3:8080", 1)}},
		{name: "same set again", give: []string{"10.0.0.3"}},
		{name: "replaced", give: []string{"10.0.0.9"}, want: []Backend{b("10.0.0.9:8080", 1)}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			f.setIPs("api.test", step.give...)
			if step.want == nil {
				r.quiet(t, 4*testInterval)
				return
			}
			checkUpdate(t, r.next(t), step.want)
			r.quiet(t, 2*testInterval)
		})
	}
}

func TestWatcherFollowsSRVRecords(t *testing.T) {
	f := startDNS(t)
	f.setIPs("a1.test", "10.0.1.1")
	f.setIPs("a2.test", "10.0.1.2")
	f.setSRV("_http._tcp.api.test", srv{1, 10, 8080, "a1.test"})
	r := watch(t, srvConfig(f, "_http._tcp.api.test"), zerolog.Nop())
	checkUpdate(t, r.next(t), []Backend{b("10.0.1.1:8080", 10)})

	f.setSRV("_http._tcp.api.test", srv{1, 10, 8080, "a1.test"}, srv{1, 20, 9090, "a2.test"})
	checkUpdate(t, r.next(t), []Backend{b("10.0.1.1:8080", 10), b("10.0.1.2:9090", 20)})

	// A target's address changing changes the set too.
	f.setIPs("a2.test", "10.0.1.3")
	checkUpdate(t, r.next(t), []Backend{b("10.0.1.1:8080", 10), b("10.0.1.3:9090", 20)})
	r.quiet(t, 4*testInterval)
}

func TestResolveA(t *testing.T) {
	f := startDNS(t)
	f.setIPs("v4.test", "10.0.0.2", "10.0.0.1", "10.0.0.1")
	f.setIPs("v6.test", "2001:db8::1")
	f.setIPs("dual.test", "2001:db8::1", "10.0.0.1", "2001:db8::2")
	f.setIPs("fqdn.test", "10.0.0.7")
	f.setIPs("empty.test")

	tests := []struct {
		name    string
		give    string
		want    []Backend
		wantErr string
	}{
		{name: "ipv4 deduplicated", give: "v4.test", want: []Backend{b("10.0.0.1:80", 1), b("10.0.0.2:80", 1)}},
		{name: "ipv6 bracketed", give: "v6.test", want: []Backend{b("[2001:db8::1]:80", 1)}},
		{name: "a and aaaa", give: "dual.test", want: []Backend{b("10.0.0.1:80", 1), b("[2001:db8::1]:80", 1), b("[2001:db8::2]:80", 1)}},
		{name: "trailing dot", give: "fqdn.test.", want: []Backend{b("10.0.0.7:80", 1)}},
		{name: "no address records", give: "empty.test", wantErr: "no such host"},
		{name: "nxdomain", give: "missing.test", wantErr: "no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWatcher("api", aConfig(f, tt.give, 80), WatcherOptions{})
			got, err := w.Resolve(context.Background())
			checkResolve(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func checkResolve(t *testing.T, got []Backend, err error, want []Backend, wantErr string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("Resolve() = %v, want %v", got, want)
	}
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("Resolve() error = %v, want nil", err)
	case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
		t.Errorf("Resolve() error = %v, want one containing %q", err, wantErr)
	}
}

func TestResolveSRV(t *testing.T) {
	f := startDNS(t)
	f.setIPs("a1.test", "10.0.1.1")
	f.setIPs("a2.test", "10.0.1.2", "2001:db8::2")
	f.setIPs("a3.test", "10.0.1.1") // same address as a1
	f.setIPs("noaddr.test")
	f.setSRV("_http._tcp.ports.test", srv{10, 5, 8080, "a1.test"}, srv{10, 1, 9090, "a2.test"})
	f.setSRV("_http._tcp.zero.test", srv{10, 0, 8080, "a1.test"}, srv{10, 3, 9090, "a2.test"})
	f.setSRV("_http._tcp.allzero.test", srv{10, 0, 8080, "a1.test"}, srv{10, 0, 8081, "a1.test"})
	f.setSRV("_http._tcp.priority.test", srv{2, 50, 9090, "a2.test"}, srv{1, 5, 8080, "a1.test"})
	f.setSRV("_http._tcp.fallback.test", srv{1, 5, 8080, "missing.test"}, srv{2, 7, 8080, "a1.test"})
	f.setSRV("_http._tcp.partial.test", srv{1, 5, 8080, "missing.test"}, srv{1, 7, 8080, "a1.test"})
	f.setSRV("_http._tcp.sum.test", srv{1, 5, 8080, "a1.test"}, srv{1, 7, 8080, "a3.test"})
	f.setSRV("_http._tcp.same-target.test", srv{1, 5, 8080, "a1.test"}, srv{1, 7, 8081, "a1.test"})
	f.setSRV("_http._tcp.unusable.test", srv{1, 5, 0, "a1.test"}, srv{1, 5, 8080, "."})
	f.setSRV("_http._tcp.allmissing.test", srv{1, 5, 8080, "missing.test"}, srv{1, 5, 8080, "noaddr.test"})
	f.setSRV("_http._tcp.none.test")

	tests := []struct {
		name    string
		give    string
		want    []Backend
		wantErr string
	}{
		{
			name: "ports and weights",
			give: "_http._tcp.ports.test",
			want: []Backend{b("10.0.1.1:8080", 5), b("10.0.1.2:9090", 1), b("[2001:db8::2]:9090", 1)},
		},
		{name: "weight 0 is 1", give: "_http._tcp.zero.test", want: []Backend{b("10.0.1.1:8080", 1), b("10.0.1.2:9090", 3), b("[2001:db8::2]:9090", 3)}},
		{name: "all weights 0", give: "_http._tcp.allzero.test", want: []Backend{b("10.0.1.1:8080", 1), b("10.0.1.1:8081", 1)}},
		{name: "lowest priority only", give: "_http._tcp.priority.test", want: []Backend{b("10.0.1.1:8080", 5)}},
		{
			name:    "next priority when none found",
			give:    "_http._tcp.fallback.test",
			want:    []Backend{b("10.0.1.1:8080", 7)},
			wantErr: "target missing.test.",
		},
		{
			name:    "missing target left out",
			give:    "_http._tcp.partial.test",
			want:    []Backend{b("10.0.1.1:8080", 7)},
			wantErr: "target missing.test.",
		},
		{name: "same address adds weights", give: "_http._tcp.sum.test", want: []Backend{b("10.0.1.1:8080", 12)}},
		{name: "one target two ports", give: "_http._tcp.same-target.test", want: []Backend{b("10.0.1.1:8080", 5), b("10.0.1.1:8081", 7)}},
		{name: "port 0 and dot target", give: "_http._tcp.unusable.test", wantErr: ErrNoBackends.Error()},
		{name: "no target found", give: "_http._tcp.allmissing.test", wantErr: "target noaddr.test."},
		{name: "no records", give: "_http._tcp.none.test", wantErr: "no such host"},
		{name: "nxdomain", give: "_http._tcp.missing.test", wantErr: "no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWatcher("api", srvConfig(f, tt.give), WatcherOptions{})
			got, err := w.Resolve(context.Background())
			checkResolve(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestResolveFallsBackToTCP(t *testing.T) {
	f := startDNS(t)
	// 200 A records do not fit the 1232 bytes Go's resolver offers over UDP.
	var ips []string
	var want []Backend
	for i := range 200 {
		ips = append(ips, fmt.Sprintf("10.1.%d.%d", i/100, i%100))
	}
	f.setIPs("big.test", ips...)
	for _, ip := range ips {
		want = append(want, b(ip+":80", 1))
	}
	slices.SortFunc(want, func(a, b Backend) int { return strings.Compare(a.Address, b.Address) })

	got, err := NewWatcher("api", aConfig(f, "big.test", 80), WatcherOptions{}).Resolve(context.Background())
	checkResolve(t, got, err, want, "")
	if f.tcpQueries.Load() == 0 {
		t.Error("no query over TCP")
	}
}

func TestResolveErrors(t *testing.T) {
	f := startDNS(t)
	f.setIPs("api.test", "10.0.0.1")
	f.setRcode(dns.RcodeServerFailure)
	_, err := NewWatcher("api", aConfig(f, "api.test", 80), WatcherOptions{}).Resolve(context.Background())
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || dnsErr.Server != f.addr || !strings.Contains(err.Error(), f.addr) {
		t.Errorf("Resolve() error = %v, want a *net.DNSError naming server %s", err, f.addr)
	}

	_, err = NewWatcher("api", config.DNSDiscovery{Name: "api.test", Type: "TXT", Resolver: f.addr}, WatcherOptions{}).
		Resolve(context.Background())
	if err == nil || !strings.Contains(err.Error(), `unsupported type "TXT"`) {
		t.Errorf("Resolve() error = %v, want unsupported type", err)
	}

	f.setRcode(dns.RcodeSuccess)
	f.setSRV("_x._tcp.dot.test", srv{1, 1, 8080, "."})
	_, err = NewWatcher("api", srvConfig(f, "_x._tcp.dot.test"), WatcherOptions{}).Resolve(context.Background())
	if !errors.Is(err, ErrNoBackends) {
		t.Errorf("Resolve() error = %v, want ErrNoBackends", err)
	}

	f.setRcode(dns.RcodeServerFailure)
	_, err = NewWatcher("api", config.DNSDiscovery{Name: "_x._tcp.api.test", Type: "SRV", Resolver: f.addr}, WatcherOptions{}).
		Resolve(context.Background())
	if !errors.As(err, &dnsErr) || dnsErr.Server != f.addr {
		t.Errorf("Resolve() SRV error = %v, want a *net.DNSError naming server %s", err, f.addr)
	}
}

func TestResolveFailsWithAnyQuery(t *testing.T) {
	type failure struct {
		name  string
		qtype uint16
		rcode int // or noAnswer
	}
	tests := []struct {
		name    string
		typ     string // A or SRV
		give    string
		fail    []failure
		want    []Backend
		wantErr string
	}{
		{
			name:    "aaaa servfail",
			typ:     "A",
			give:    "dual.test",
			fail:    []failure{{"dual.test", dns.TypeAAAA, dns.RcodeServerFailure}},
			wantErr: "server misbehaving",
		},
		{
			name:    "a servfail",
			typ:     "A",
			give:    "dual.test",
			fail:    []failure{{"dual.test", dns.TypeA, dns.RcodeServerFailure}},
			wantErr: "server misbehaving",
		},
		{
			name:    "aaaa refused",
			typ:     "A",
			give:    "dual.test",
			fail:    []failure{{"dual.test", dns.TypeAAAA, dns.RcodeRefused}},
			wantErr: "server misbehaving",
		},
		{
			name:    "no aaaa answer",
			typ:     "A",
			give:    "dual.test",
			fail:    []failure{{"dual.test", dns.TypeAAAA, noAnswer}},
			wantErr: "timeout",
		},
		{
			name:    "a servfail, no aaaa records",
			typ:     "A",
			give:    "v4.test",
			fail:    []failure{{"v4.test", dns.TypeA, dns.RcodeServerFailure}},
			wantErr: "server misbehaving",
		},
		{
			name: "no aaaa records",
			typ:  "A",
			give: "v4.test",
			want: []Backend{b("127.0.0.1:80", 1), b("127.0.0.2:80", 1)},
		},
		{
			name: "aaaa nxdomain is no records",
			typ:  "A",
			give: "dual.test",
			fail: []failure{{"dual.test", dns.TypeAAAA, dns.RcodeNameError}},
			want: []Backend{b("127.0.0.1:80", 1), b("127.0.0.2:80", 1)},
		},
		{
			name: "no a records",
			typ:  "A",
			give: "v6.test",
			want: []Backend{b("[::1]:80", 1)},
		},
		{name: "nxdomain", typ: "A", give: "missing.test", wantErr: "no such host"},
		{
			name: "srv targets whole",
			typ:  "SRV",
			give: "_http._tcp.api.test",
			want: []Backend{b("127.0.0.1:8080", 1), b("127.0.0.2:8080", 1), b("127.0.0.3:8080", 1), b("[::1]:8080", 1)},
		},
		{
			name:    "srv target aaaa servfail",
			typ:     "SRV",
			give:    "_http._tcp.api.test",
			fail:    []failure{{"dual.test", dns.TypeAAAA, dns.RcodeServerFailure}},
			wantErr: "target dual.test.",
		},
		{
			name:    "srv target a servfail",
			typ:     "SRV",
			give:    "_http._tcp.api.test",
			fail:    []failure{{"dual.test", dns.TypeA, dns.RcodeServerFailure}},
			wantErr: "target dual.test.",
		},
		{
			name:    "srv target a servfail, no aaaa records",
			typ:     "SRV",
			give:    "_http._tcp.api.test",
			fail:    []failure{{"v4b.test", dns.TypeA, dns.RcodeServerFailure}},
			wantErr: "target v4b.test.",
		},
		{
			name:    "srv servfail",
			typ:     "SRV",
			give:    "_http._tcp.api.test",
			fail:    []failure{{"_http._tcp.api.test", dns.TypeSRV, dns.RcodeServerFailure}},
			wantErr: "server misbehaving",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startDNS(t)
			f.setIPs("dual.test", "127.0.0.1", "127.0.0.2", "::1")
			f.setIPs("v4.test", "127.0.0.1", "127.0.0.2")
			f.setIPs("v4b.test", "127.0.0.3")
			f.setIPs("v6.test", "::1")
			f.setSRV("_http._tcp.api.test", srv{1, 1, 8080, "dual.test"}, srv{1, 1, 8080, "v4b.test"})
			for _, fl := range tt.fail {
				f.setRcodeFor(fl.name, fl.qtype, fl.rcode)
			}
			cfg := aConfig(f, tt.give, 80)
			if tt.typ == "SRV" {
				cfg = srvConfig(f, tt.give)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			got, err := NewWatcher("api", cfg, WatcherOptions{}).Resolve(ctx)
			checkResolve(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestResolveSystemResolver(t *testing.T) {
	// localhost comes from /etc/hosts: no network involved.
	got, err := NewWatcher("api", config.DNSDiscovery{Name: "localhost", Port: 80}, WatcherOptions{}).
		Resolve(context.Background())
	if err != nil || !slices.Contains(got, b("127.0.0.1:80", 1)) {
		t.Errorf("Resolve() = %v, %v, want 127.0.0.1:80 among them", got, err)
	}
}

func TestWatcherKeepsLastGoodSet(t *testing.T) {
	tests := []struct {
		name    string
		fail    func(*fakeDNS)
		recover func(*fakeDNS)
	}{
		{
			name:    "servfail",
			fail:    func(f *fakeDNS) { f.setRcode(dns.RcodeServerFailure) },
			recover: func(f *fakeDNS) { f.setRcode(dns.RcodeSuccess) },
		},
		{
			name:    "nxdomain",
			fail:    func(f *fakeDNS) { f.setRcode(dns.RcodeNameError) },
			recover: func(f *fakeDNS) { f.setRcode(dns.RcodeSuccess) },
		},
		{
			name:    "empty answer",
			fail:    func(f *fakeDNS) { f.setIPs("api.test") },
			recover: func(*fakeDNS) {},
		},
		{
			name:    "server stopped",
			fail:    (*fakeDNS).stop,
			recover: (*fakeDNS).restart,
		},
		{
			name:    "no answer",
			fail:    func(f *fakeDNS) { f.setSilent(true) },
			recover: func(f *fakeDNS) { f.setSilent(false) },
		},
		{
			name:    "aaaa servfail",
			fail:    func(f *fakeDNS) { f.setRcodeFor("api.test", dns.TypeAAAA, dns.RcodeServerFailure) },
			recover: func(f *fakeDNS) { f.setRcodeFor("api.test", dns.TypeAAAA, dns.RcodeSuccess) },
		},
		{
			name:    "a servfail",
			fail:    func(f *fakeDNS) { f.setRcodeFor("api.test", dns.TypeA, dns.RcodeServerFailure) },
			recover: func(f *fakeDNS) { f.setRcodeFor("api.test", dns.TypeA, dns.RcodeSuccess) },
		},
		{
			name:    "aaaa refused",
			fail:    func(f *fakeDNS) { f.setRcodeFor("api.test", dns.TypeAAAA, dns.RcodeRefused) },
			recover: func(f *fakeDNS) { f.setRcodeFor("api.test", dns.TypeAAAA, dns.RcodeSuccess) },
		},
		{
			name:    "no aaaa answer",
			fail:    func(f *fakeDNS) { f.setRcodeFor("api.test", dns.TypeAAAA, noAnswer) },
			recover: func(f *fakeDNS) { f.setRcodeFor("api.test", dns.TypeAAAA, dns.RcodeSuccess) },
		},
	}
	// Lookups time out sooner than the 1s floor, to keep the test short.
	shortTimeout := func(w *Watcher) { w.timeout = 200 * time.Millisecond }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startDNS(t)
			f.setIPs("api.test", "10.0.0.1", "10.0.0.2", "::1")
			r := watch(t, aConfig(f, "api.test", 80), zerolog.Nop(), shortTimeout)
			checkUpdate(t, r.next(t), []Backend{b("10.0.0.1:80", 1), b("10.0.0.2:80", 1), b("[::1]:80", 1)})
			r.drainErrs()

			tt.fail(f)
			r.nextErr(t)
			r.nextErr(t)
			r.quiet(t, 2*testInterval)

			f.setIPs("api.test", "10.0.0.1", "10.0.0.3")
			tt.recover(f)
			// A lookup whose A and AAAA queries (asked at the same time)
			// straddle the two changes above may first report a mix of
			// the old and the new answers; the new set must follow.
			r.nextMatching(t, []Backend{b("10.0.0.1:80", 1), b("10.0.0.3:80", 1)})
		})
	}
}

func TestWatcherFirstLookupFails(t *testing.T) {
	f := startDNS(t)
	f.setRcode(dns.RcodeServerFailure)
	r := watch(t, aConfig(f, "api.test", 80), zerolog.Nop())
	r.nextErr(t)
	r.quiet(t, 2*testInterval)

	f.setIPs("api.test", "10.0.0.1")
	f.setRcode(dns.RcodeSuccess)
	checkUpdate(t, r.next(t), []Backend{b("10.0.0.1:80", 1)})
}

func TestWatcherPartialSRV(t *testing.T) {
	f := startDNS(t)
	f.setIPs("a1.test", "10.0.1.1")
	f.setIPs("a2.test", "10.0.1.2")
	f.setSRV("_http._tcp.api.test", srv{1, 1, 8080, "a1.test"}, srv{1, 1, 8080, "a2.test"})
	r := watch(t, srvConfig(f, "_http._tcp.api.test"), zerolog.Nop())
	checkUpdate(t, r.next(t), []Backend{b("10.0.1.1:8080", 1), b("10.0.1.2:8080", 1)})

	// A target gone (its pod deleted, say) is left out, and the Update says so.
	f.setSRV("_http._tcp.api.test", srv{1, 1, 8080, "a1.test"}, srv{1, 1, 8080, "gone.test"})
	u := r.next(t)
	if !slices.Equal(u.Backends, []Backend{b("10.0.1.1:8080", 1)}) || u.Err == nil || !strings.Contains(u.Err.Error(), "gone.test") {
		t.Fatalf("update = %+v, want 10.0.1.1:8080 and an error naming gone.test", u)
	}
	r.quiet(t, 4*testInterval)
}

// syncBuffer is a bytes.Buffer safe for the Run goroutine to write to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(s.buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestWatcherLogs(t *testing.T) {
	f := startDNS(t)
	f.setIPs("api.test", "10.0.0.1")
	var logs syncBuffer
	r := watch(t, aConfig(f, "api.test", 80), zerolog.New(&logs).Level(zerolog.DebugLevel))
	r.next(t)
	f.setRcode(dns.RcodeServerFailure)
	for range 3 {
		r.nextErr(t)
	}
	f.setRcode(dns.RcodeSuccess)
	f.setIPs("api.test", "10.0.0.2")
	r.next(t)

	counts := map[string]int{}
	for _, l := range logs.lines(t) {
		msg, _ := l["message"].(string)
		key := fmt.Sprint(l["level"], ": ", msg)
		counts[key]++
		if l["pool"] != "api" || l["name"] != "api.test" || msg != strings.ToLower(msg) {
			t.Errorf("log line %v, want pool api, name api.test, lowercase message", l)
		}
		if strings.Contains(msg, "failed") && (l["error"] == nil || l["backends_kept"] != 1.0) {
			t.Errorf("log line %v, want error and backends_kept 1", l)
		}
	}
	for key, want := range map[string]int{
		"info: dns backends changed":                         2,
		"warn: dns lookup failed, keeping the last good set": 1, // the first of the same error
		"info: dns lookup recovered":                         1,
	} {
		if counts[key] != want {
			t.Errorf("%d lines %q, want %d; all: %v", counts[key], key, want, counts)
		}
	}
	if counts["debug: dns lookup failed, keeping the last good set"] < 2 {
		t.Errorf("repeated failures not logged at debug level: %v", counts)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	tests := []struct {
		name   string
		silent bool // cancel during a lookup that would take 5s
	}{
		{name: "between lookups"},
		{name: "during a lookup", silent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startDNS(t)
			f.setIPs("api.test", "10.0.0.1")
			f.setSilent(tt.silent)
			cfg := aConfig(f, "api.test", 80)
			cfg.Interval = time.Minute
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			updates := make(chan Update, 1)
			w := NewWatcher("api", cfg, WatcherOptions{OnUpdate: func(u Update) { updates <- u }})
			done := make(chan struct{})
			go func() {
				defer close(done)
				w.Run(ctx)
			}()
			if tt.silent {
				waitFor(t, "a query", func() bool { return f.queries() > 0 })
			} else {
				select {
				case <-updates:
				case <-time.After(5 * time.Second):
					t.Fatal("no update within 5s")
				}
			}
			start := time.Now()
			cancel()
			select {
			case <-done:
			case <-time.After(time.Second):
				t.Fatal("Run did not return within 1s of cancel")
			}
			t.Logf("Run returned %v after cancel", time.Since(start))
		})
	}
}

func TestNewWatcherDefaults(t *testing.T) {
	tests := []struct {
		name        string
		give        config.DNSDiscovery
		wantType    string
		wantEvery   time.Duration
		wantTimeout time.Duration
	}{
		{name: "zero", give: config.DNSDiscovery{}, wantType: "A", wantEvery: DefaultInterval, wantTimeout: 5 * time.Second},
		{name: "short interval", give: config.DNSDiscovery{Type: "srv", Interval: 50 * time.Millisecond}, wantType: "SRV", wantEvery: 50 * time.Millisecond, wantTimeout: time.Second},
		{name: "mid interval", give: config.DNSDiscovery{Type: "A", Interval: 3 * time.Second}, wantType: "A", wantEvery: 3 * time.Second, wantTimeout: 3 * time.Second},
		{name: "long interval", give: config.DNSDiscovery{Interval: time.Minute}, wantType: "A", wantEvery: time.Minute, wantTimeout: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWatcher("api", tt.give, WatcherOptions{})
			if w.cfg.Type != tt.wantType || w.cfg.Interval != tt.wantEvery || w.timeout != tt.wantTimeout {
				t.Errorf("NewWatcher() type %q, interval %v, timeout %v, want %q, %v, %v",
					w.cfg.Type, w.cfg.Interval, w.timeout, tt.wantType, tt.wantEvery, tt.wantTimeout)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if got := jitter(time.Second); got < 900*time.Millisecond || got > 1100*time.Millisecond {
			t.Fatalf("jitter(1s) = %v, want 0.9s-1.1s", got)
		}
	}
}
