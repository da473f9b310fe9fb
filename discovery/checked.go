package discovery

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// errBadAnswer fails a query whose answer is not one sluice will use
// (check); Go's resolver then fails the lookup, and the last good set
// stays. Temporary, as a SERVFAIL is: with StrictErrors that ends a walk
// of the search list, which would otherwise go on to the next name and
// could take its NXDOMAIN for "no such family" (found by review).
var errBadAnswer error = badAnswerError{}

type badAnswerError struct{}

func (badAnswerError) Error() string   { return "dns answer refused" }
func (badAnswerError) Timeout() bool   { return false }
func (badAnswerError) Temporary() bool { return true }

// verdict is check's answer: use the message, refuse it, or have the
// resolver ask again over TCP (truncate).
type verdict uint8

const (
	use verdict = iota
	refuse
	truncate
)

// checkedConn sits under Go's resolver (its Dial) and looks at each answer
// to the query written on it before the resolver does, which takes
// whatever records it could parse (found by review): a TCP answer that
// still says truncated, or a UDP answer cut off inside a record, gave a
// partial set, which drained the backends left out until the next lookup;
// and records for names other than the question were used. Answers with
// another ID or question pass untouched: the resolver skips those itself.
type checkedConn struct {
	net.Conn
	tcp   bool
	query []byte // the query as written (without TCP's length prefix)
	// pending is a checked TCP answer, with its length prefix, being read
	// out by the resolver.
	pending []byte
	// perTry caps the deadline the resolver sets for one try (0: none),
	// see SetDeadline.
	perTry time.Duration
}

// SetDeadline is how Go's resolver bounds one try, by resolv.conf's
// timeout (5 s by default): no shorter than a whole lookup's bound here
// (the interval clamped to 1-5 s), so a lost datagram failed the lookup
// and nothing was asked again (found by review). Capped at perTry, a try
// ends in time for the resolver's next attempt.
func (c *checkedConn) SetDeadline(t time.Time) error {
	if c.perTry > 0 {
		if limit := time.Now().Add(c.perTry); t.IsZero() || t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetDeadline(t)
}

// checkedPacketConn is a checkedConn over UDP: Go's resolver frames a
// query by whether its connection is a net.PacketConn.
type checkedPacketConn struct {
	*checkedConn
	pc net.PacketConn
}

func (c checkedPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.pc.ReadFrom(p)
	if err == nil {
		err = c.checkDatagram(p[:n])
	}
	return n, addr, err
}

func (c checkedPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.query = append(c.query[:0], p...)
	return c.pc.WriteTo(p, addr)
}

// checked wraps conn, dialled on network ("udp" or "tcp"), for Go's
// resolver, each try bounded by perTry (0: as the resolver says).
func checked(conn net.Conn, network string, perTry time.Duration) net.Conn {
	c := &checkedConn{Conn: conn, tcp: strings.HasPrefix(network, "tcp"), perTry: perTry}
	if pc, ok := conn.(net.PacketConn); ok && !c.tcp {
		return checkedPacketConn{checkedConn: c, pc: pc}
	}
	return c
}

func (c *checkedConn) Write(p []byte) (int, error) {
	q := p
	if c.tcp && len(q) >= 2 {
		q = q[2:]
	}
	c.query = append(c.query[:0], q...)
	return c.Conn.Write(p)
}

func (c *checkedConn) Read(p []byte) (int, error) {
	if !c.tcp {
		n, err := c.Conn.Read(p)
		if err == nil {
			err = c.checkDatagram(p[:n])
		}
		return n, err
	}
	if len(c.pending) == 0 {
		var hdr [2]byte
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, err
		}
		msg := make([]byte, 2+int(binary.BigEndian.Uint16(hdr[:])))
		copy(msg, hdr[:])
		if _, err := io.ReadFull(c.Conn, msg[2:]); err != nil {
			return 0, err
		}
		if c.check(msg[2:]) != use {
			return 0, errBadAnswer
		}
		c.pending = msg
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// checkDatagram checks a UDP answer in place: one that cannot be parsed
// whole is marked truncated, so that the resolver asks again over TCP,
// which gets the whole of an answer too big for its UDP buffer (1232
// bytes) from a server that ignores EDNS and does not set TC itself
// (found by review: every such lookup failed).
func (c *checkedConn) checkDatagram(msg []byte) error {
	switch c.check(msg) {
	case refuse:
		return errBadAnswer
	case truncate:
		msg[2] |= 0x02 // TC
	}
	return nil
}

// check looks at answer msg to the query written: refused when it answers
// that query (same ID and question) but is truncated over TCP or holds an
// A, AAAA or SRV record for a name that is neither the question's nor
// reached from it through the answer's CNAMEs; to be asked again over TCP
// (truncate) when it cannot be parsed whole, which over TCP refuses it.
// Names compare in ASCII case only, as DNS does.
func (c *checkedConn) check(msg []byte) verdict {
	var qp, ap dnsmessage.Parser
	qh, err := qp.Start(c.query)
	if err != nil {
		return use // not a query we can read: leave it to the resolver
	}
	q, err := qp.Question()
	if err != nil {
		return use
	}
	h, err := ap.Start(msg)
	if err != nil || h.ID != qh.ID || !h.Response {
		return use // not the answer to it (or not one at all): the resolver skips it
	}
	aq, err := ap.Question()
	if err != nil || asciiLower(aq.Name.String()) != asciiLower(q.Name.String()) || aq.Type != q.Type {
		return use
	}
	cut := refuse // an answer that ends early: over TCP, the full one
	if !c.tcp {
		cut = truncate
	}
	if h.Truncated {
		if c.tcp {
			return refuse // TCP is the full answer: no partial sets
		}
		return use // the resolver asks again over TCP
	}
	if err := ap.SkipAllQuestions(); err != nil {
		return cut
	}
	answers, err := ap.AllAnswers()
	if err != nil {
		return cut // cut off inside a record: the rest is unknown
	}
	if _, err := ap.AllAuthorities(); err != nil {
		return cut
	}
	// The names the question reaches: itself and its CNAME targets, in
	// any order in the answer.
	reach := map[string]bool{asciiLower(q.Name.String()): true}
	for grew := true; grew; {
		grew = false
		for _, rr := range answers {
			if cn, ok := rr.Body.(*dnsmessage.CNAMEResource); ok && reach[asciiLower(rr.Header.Name.String())] {
				if t := asciiLower(cn.CNAME.String()); !reach[t] {
					reach[t], grew = true, true
				}
			}
		}
	}
	for _, rr := range answers {
		switch rr.Header.Type {
		case dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeSRV:
			if !reach[asciiLower(rr.Header.Name.String())] {
				return refuse
			}
		}
	}
	return use
}

// asciiLower lower-cases s's ASCII letters only: DNS names compare that
// way, and strings.ToLower folded the Kelvin sign into "k" (found by
// review).
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
