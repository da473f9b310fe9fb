package main

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// r23SRV answers, over UDP on 127.0.0.1, the SRV query for name
// with one record (priority 0, weight 1) to port on a target whose A
// record is 127.0.0.1; while failing is set, every query gets SERVFAIL.
type r23SRV struct {
	addr    string
	mu      sync.Mutex
	failing bool
}

func startR23SRV(t *testing.T, name string, port int) *r23SRV {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &r23SRV{addr: pc.LocalAddr().String()}
	const target = "node.r23.test."
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		d.mu.Lock()
		failing := d.failing
		d.mu.Unlock()
		switch {
		case failing || len(q.Question) != 1:
			m.Rcode = dns.RcodeServerFailure
		case q.Question[0].Name == name && q.Question[0].Qtype == dns.TypeSRV:
			m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1},
				Priority: 0, Weight: 1, Port: uint16(port), Target: target})
		case q.Question[0].Name == target && q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(127, 0, 0, 1)})
		case q.Question[0].Name == target || q.Question[0].Name == name:
			// Exists, no records of that type.
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return d
}

func (d *r23SRV) setFailing(v bool) {
	d.mu.Lock()
	d.failing = v
	d.mu.Unlock()
}

// Found by review. What was wrong: README's discovery table says `port` is "ignored with SRV" (and
// "Configuration": discovery.dns.port with type SRV is accepted and
// ignored, each record gives its port), and "An outage of the DNS server
// never empties a pool". Yet a reload that only removes (or changes) the
// ignored port of an SRV pool during a DNS outage empties the pool: every
// request gets 503 until DNS answers again. sameLookup
// (cmd/sluice/discovery.go:93) compares Port whatever the type, so
// needSeeds takes the ignored port for another lookup; the seed lookup
// fails in the outage and seedsFor hands ApplySeeded an empty set (and
// ApplySeeded, control.go:247-252, also counts the port, so the next
// answer is taken as the first). nginx, HAProxy and Envoy keep the last
// resolved hosts across such a reload. Same scenario as
// TestDNSIntervalChangeDuringOutage, with the ignored port instead of the
// interval.
func TestSRVIgnoredPortChangeDuringOutage(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	const name = "_http._tcp.api.r23.test."
	d := startR23SRV(t, name, portOf(t, up.addr))
	listen, admin := freePort(t), freePort(t)
	render := func(port string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\nroutes: [{pool: api}]\npools:\n  api:\n    discovery: {dns: {name: %q, type: SRV, %sinterval: 200ms, resolver: %s}}\n",
			listen, admin, name, port, d.addr)
	}
	path := writeConfig(t, render("port: 8080, "))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	waitUntil(t, "the SRV pool serving", 5*time.Second, func() bool { return answers("http://"+listen+"/", 200) })

	d.setFailing(true)
	time.Sleep(600 * time.Millisecond)
	if !answers("http://"+listen+"/", 200) {
		t.Fatal("the pool lost its backends on a failed lookup before any reload")
	}
	replaceFile(t, path, render("")) // the ignored port removed
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatalf("reload = %d %s", code, body)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	for range 5 {
		resp, err := c.Get("http://" + listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("after a reload that only removed discovery.dns.port (ignored with type SRV) during a DNS outage: %d, want 200 from the last good set", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
