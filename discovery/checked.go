package discovery

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// errBadAnswer fails a query whose answer is not one sluice will use
// (checkAnswer); Go's resolver then fails the lookup, and the last good
// set stays.
var errBadAnswer = errors.New("dns answer refused")

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
		err = c.check(p[:n])
	}
	return n, addr, err
}

func (c checkedPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.query = append(c.query[:0], p...)
	return c.pc.WriteTo(p, addr)
}

// checked wraps conn, dialled on network ("udp" or "tcp"), for Go's
// resolver.
func checked(conn net.Conn, network string) net.Conn {
	c := &checkedConn{Conn: conn, tcp: strings.HasPrefix(network, "tcp")}
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
			err = c.check(p[:n])
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
		if err := c.check(msg[2:]); err != nil {
			return 0, err
		}
		c.pending = msg
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// check looks at answer msg to the query written: refused when it answers
// that query (same ID and question) but is truncated over TCP, cannot be
// parsed whole, or holds an A, AAAA or SRV record for a name that is
// neither the question's nor reached from it through the answer's CNAMEs.
func (c *checkedConn) check(msg []byte) error {
	var qp, ap dnsmessage.Parser
	qh, err := qp.Start(c.query)
	if err != nil {
		return nil // not a query we can read: leave it to the resolver
	}
	q, err := qp.Question()
	if err != nil {
		return nil
	}
	h, err := ap.Start(msg)
	if err != nil || h.ID != qh.ID || !h.Response {
		return nil // not the answer to it (or not one at all): the resolver skips it
	}
	aq, err := ap.Question()
	if err != nil || !strings.EqualFold(aq.Name.String(), q.Name.String()) || aq.Type != q.Type {
		return nil
	}
	if h.Truncated {
		if c.tcp {
			return errBadAnswer // TCP is the full answer: no partial sets
		}
		return nil // the resolver asks again over TCP
	}
	if err := ap.SkipAllQuestions(); err != nil {
		return errBadAnswer
	}
	answers, err := ap.AllAnswers()
	if err != nil {
		return errBadAnswer // cut off inside a record: the rest is unknown
	}
	if _, err := ap.AllAuthorities(); err != nil {
		return errBadAnswer
	}
	// The names the question reaches: itself and its CNAME targets, in
	// any order in the answer.
	reach := map[string]bool{strings.ToLower(q.Name.String()): true}
	for grew := true; grew; {
		grew = false
		for _, rr := range answers {
			if cn, ok := rr.Body.(*dnsmessage.CNAMEResource); ok && reach[strings.ToLower(rr.Header.Name.String())] {
				if t := strings.ToLower(cn.CNAME.String()); !reach[t] {
					reach[t], grew = true, true
				}
			}
		}
	}
	for _, rr := range answers {
		switch rr.Header.Type {
		case dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeSRV:
			if !reach[strings.ToLower(rr.Header.Name.String())] {
				return errBadAnswer
			}
		}
	}
	return nil
}
