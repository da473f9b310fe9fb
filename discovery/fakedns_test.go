package discovery

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeDNS is an authoritative DNS server on 127.0.0.1, UDP and TCP on the
// same port, answering A, AAAA and SRV queries from a record set that the
// test changes. Its UDP answers are truncated to the size the client
// offers, so that large answers take the resolver's TCP fallback.
type fakeDNS struct {
	t    *testing.T
	addr string

	mu     sync.Mutex
	ips    map[string][]netip.Addr // by lowercase FQDN
	srvs   map[string][]*dns.SRV
	rcode  int  // when not success, the answer to every query
	silent bool // when set, no query gets an answer
	// rcodes, when they hold a query's name and type, override the
	// answer to it: that rcode, or no answer at all when it is noAnswer.
	rcodes map[query]int

	udpQueries, tcpQueries atomic.Int64

	servers []*dns.Server
	done    chan struct{} // closed when every server has returned
}

// startDNS starts a fakeDNS, stopped when the test ends.
func startDNS(t *testing.T) *fakeDNS {
	t.Helper()
	f := &fakeDNS{
		t:      t,
		ips:    make(map[string][]netip.Addr),
		srvs:   make(map[string][]*dns.SRV),
		rcodes: make(map[query]int),
	}
	// The kernel picks a free TCP port; UDP may find it taken, so retry.
	// (TCP first: under the whole suite's load a UDP port's TCP twin was
	// taken 11 times in a row in a clean-clone CI run; UDP ports are
	// rarely in use.)
	for try := 0; ; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen tcp: %v", err)
		}
		pc, err := net.ListenPacket("udp", l.Addr().String())
		if err != nil {
			l.Close()
			if try == 50 {
				t.Fatalf("listen udp: %v", err)
			}
			continue
		}
		f.addr = pc.LocalAddr().String()
		f.serve(pc, l)
		break
	}
	t.Cleanup(f.stop)
	return f
}

func (f *fakeDNS) serve(pc net.PacketConn, l net.Listener) {
	var started, done sync.WaitGroup
	f.servers = []*dns.Server{
		{PacketConn: pc, Handler: f},
		{Listener: l, Handler: f},
	}
	f.done = make(chan struct{})
	for _, s := range f.servers {
		started.Add(1)
		s.NotifyStartedFunc = started.Done
		done.Go(func() {
			if err := s.ActivateAndServe(); err != nil {
				f.t.Errorf("dns server: %v", err)
			}
		})
	}
	go func() { done.Wait(); close(f.done) }()
	// Shutdown fails on a server that has not started yet.
	started.Wait()
}

// stop shuts the server down, so that queries are refused. It may be
// called more than once.
func (f *fakeDNS) stop() {
	if f.servers == nil {
		return
	}
	for _, s := range f.servers {
		if err := s.Shutdown(); err != nil {
			f.t.Errorf("dns server shutdown: %v", err)
		}
	}
	<-f.done
	f.servers = nil
}

// restart serves again on the same port after stop.
func (f *fakeDNS) restart() {
	f.t.Helper()
	pc, err := net.ListenPacket("udp", f.addr)
	if err != nil {
		f.t.Fatalf("listen udp: %v", err)
	}
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		pc.Close()
		f.t.Fatalf("listen tcp: %v", err)
	}
	f.serve(pc, l)
}

// setIPs makes ips the A and AAAA records of name; with no ips, name
// exists with no address records.
func (f *fakeDNS) setIPs(name string, ips ...string) {
	f.t.Helper()
	addrs := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, netip.MustParseAddr(ip))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ips[dns.CanonicalName(name)] = addrs
}

// srv is one SRV record to serve.
type srv struct {
	priority, weight, port uint16
	target                 string
}

// setSRV makes records the SRV records of name.
func (f *fakeDNS) setSRV(name string, records ...srv) {
	fqdn := dns.CanonicalName(name)
	rrs := make([]*dns.SRV, 0, len(records))
	for _, r := range records {
		rrs = append(rrs, &dns.SRV{
			Hdr:      dns.RR_Header{Name: fqdn, Rrtype: dns.TypeSRV, Class: dns.ClassINET},
			Priority: r.priority,
			Weight:   r.weight,
			Port:     r.port,
			Target:   dns.Fqdn(r.target),
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.srvs[fqdn] = rrs
}

// setRcode answers every query with rcode; dns.RcodeSuccess serves the
// records again.
func (f *fakeDNS) setRcode(rcode int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rcode = rcode
}

// query is a question's name (a lowercase FQDN) and type.
type query struct {
	name  string
	qtype uint16
}

// noAnswer, given to setRcodeFor, makes the server ignore a query.
const noAnswer = -1

// setRcodeFor answers queries of qtype for name with rcode (noAnswer: none)
// whatever the records say; dns.RcodeSuccess serves the records again.
func (f *fakeDNS) setRcodeFor(name string, qtype uint16, rcode int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := query{dns.CanonicalName(name), qtype}
	if rcode == dns.RcodeSuccess {
		delete(f.rcodes, q)
		return
	}
	f.rcodes[q] = rcode
}

// setSilent makes the server read queries and answer none.
func (f *fakeDNS) setSilent(silent bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.silent = silent
}

func (f *fakeDNS) queries() int64 { return f.udpQueries.Load() + f.tcpQueries.Load() }

// ServeDNS answers one query.
func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	if udp {
		f.udpQueries.Add(1)
	} else {
		f.tcpQueries.Add(1)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.silent || len(req.Question) != 1 {
		return
	}
	rcode := f.rcode
	if rc, ok := f.rcodes[query{dns.CanonicalName(req.Question[0].Name), req.Question[0].Qtype}]; ok {
		if rc == noAnswer {
			return
		}
		rcode = rc
	}
	m := new(dns.Msg)
	m.SetReply(req)
	// Go's resolver takes an empty answer without AA or RA for a lame
	// referral rather than "no such host".
	m.Authoritative = true
	m.Rcode = rcode
	if rcode == dns.RcodeSuccess {
		f.answer(m, req.Question[0])
	}
	if udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		f.t.Logf("dns write: %v", err)
	}
}

func (f *fakeDNS) answer(m *dns.Msg, q dns.Question) {
	name := dns.CanonicalName(q.Name)
	ips, hasIPs := f.ips[name]
	srvs, hasSRV := f.srvs[name]
	if !hasIPs && !hasSRV {
		m.Rcode = dns.RcodeNameError
		return
	}
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET}
	switch q.Qtype {
	case dns.TypeA, dns.TypeAAAA:
		for _, ip := range ips {
			switch {
			case ip.Is4() && q.Qtype == dns.TypeA:
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
			case ip.Is6() && q.Qtype == dns.TypeAAAA:
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
			}
		}
	case dns.TypeSRV:
		for _, rr := range srvs {
			m.Answer = append(m.Answer, rr)
		}
	}
}

// waitFor polls cond until it holds or a few seconds have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
