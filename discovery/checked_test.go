package discovery

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sluice/config"
)

// TestCheckedAnswers: answers Go's resolver would use in part, or with
// records for other names, fail the lookup (the last good set stays);
// whole answers, CNAME chains included, pass (found by review).
func TestCheckedAnswers(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(t *testing.T, req *dns.Msg, tcp bool) []byte
		want   []string // nil: the lookup fails
	}{
		{"whole answer", func(t *testing.T, req *dns.Msg, tcp bool) []byte {
			return mustPack(t, aReply(req, fiveIPs...))
		}, fiveIPs},
		{"truncated over TCP too", func(t *testing.T, req *dns.Msg, tcp bool) []byte {
			m := aReply(req, fiveIPs...)
			m.Truncated = true
			if tcp {
				m.Answer = m.Answer[:min(2, len(m.Answer))]
			} else {
				m.Answer = nil
			}
			return mustPack(t, m)
		}, nil},
		// The header still counts 5 answers; the third ends early. Over
		// UDP (a datagram cut to the resolver's buffer, from a server that
		// sets no TC) the resolver asks again over TCP and gets them all;
		// over TCP the lookup fails.
		{"UDP answer cut inside a record", func(t *testing.T, req *dns.Msg, tcp bool) []byte {
			out := mustPack(t, aReply(req, fiveIPs...))
			if req.Question[0].Qtype != dns.TypeA || tcp {
				return out
			}
			return out[:len(out)-2*16-10]
		}, fiveIPs},
		{"TCP answer cut inside a record", func(t *testing.T, req *dns.Msg, tcp bool) []byte {
			m := aReply(req, fiveIPs...)
			if !tcp {
				m.Truncated, m.Answer = true, nil
				return mustPack(t, m)
			}
			out := mustPack(t, m)
			if req.Question[0].Qtype != dns.TypeA {
				return out
			}
			return out[:len(out)-2*16-10]
		}, nil},
		{"a record for a name that folds to the question's only in Unicode", func(t *testing.T, req *dns.Msg, tcp bool) []byte {
			m := aReply(req)
			if req.Question[0].Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: "\u212api.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
					A:   net.ParseIP("10.9.9.9").To4(),
				})
			}
			return mustPack(t, m)
		}, nil},
		{"a record for another name", func(t *testing.T, req *dns.Msg, tcp bool) []byte {
			m := aReply(req, "10.0.0.1")
			if req.Question[0].Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: "evil.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
					A:   net.ParseIP("10.9.9.9").To4(),
				})
			}
			return mustPack(t, m)
		}, nil},
		{"a CNAME chain", func(t *testing.T, req *dns.Msg, tcp bool) []byte {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Authoritative = true
			q := req.Question[0]
			if q.Qtype == dns.TypeA {
				// The A record's owner is reached through both CNAMEs.
				m.Answer = []dns.RR{
					&dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 5}, Target: "mid.test."},
					&dns.CNAME{Hdr: dns.RR_Header{Name: "mid.test.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 5}, Target: "real.test."},
					&dns.A{Hdr: dns.RR_Header{Name: "real.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP("10.0.0.7").To4()},
				}
			}
			return mustPack(t, m)
		}, []string{"10.0.0.7"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := startRawDNS(t, func(req *dns.Msg, tcp bool) []byte { return tt.answer(t, req, tcp) })
			w := NewWatcher("api", config.DNSDiscovery{Name: "api.test.", Port: 80, Interval: time.Second, Resolver: r.addr}, WatcherOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			got, err := w.Resolve(ctx)
			if tt.want == nil {
				if err == nil {
					t.Errorf("Resolve() = %v, nil; want a failure", got)
				}
				return
			}
			var addrs, want []string
			for _, b := range got {
				addrs = append(addrs, b.Address)
			}
			for _, ip := range tt.want {
				want = append(want, fmt.Sprintf("%s:80", ip))
			}
			slices.Sort(addrs)
			if err != nil || !slices.Equal(addrs, want) {
				t.Errorf("Resolve() = %v, %v; want %v", addrs, err, want)
			}
		})
	}
}

// FuzzCheckedAnswer: check never panics on any answer bytes, and whatever
// it lets through for the query's own ID and question parses whole.
func FuzzCheckedAnswer(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("api.test.", dns.TypeA)
	query, err := q.Pack()
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range []*dns.Msg{aReply(q, fiveIPs...), aReply(q)} {
		out, _ := m.Pack()
		f.Add(out, false)
		f.Add(out, true)
		f.Add(out[:len(out)-3], false)
	}
	f.Fuzz(func(t *testing.T, answer []byte, tcp bool) {
		c := &checkedConn{tcp: tcp, query: query}
		if c.check(answer) != use {
			return
		}
		m := new(dns.Msg)
		if m.Unpack(answer) != nil || m.Id != q.Id || !m.Response || len(m.Question) != 1 ||
			dns.CanonicalName(m.Question[0].Name) != "api.test." || m.Question[0].Qtype != dns.TypeA || m.Truncated {
			return // not the answer to this query, or one the resolver asks again for
		}
		for _, rr := range m.Answer {
			if h := rr.Header(); (h.Rrtype == dns.TypeA || h.Rrtype == dns.TypeAAAA) && dns.CanonicalName(h.Name) != "api.test." {
				var cname bool
				for _, r2 := range m.Answer {
					cname = cname || r2.Header().Rrtype == dns.TypeCNAME
				}
				if !cname {
					t.Fatalf("check let through %v for api.test. with no CNAME", rr)
				}
			}
		}
	})
}
