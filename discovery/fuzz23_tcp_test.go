package discovery

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/dns/dnsmessage"
)

// FuzzCheckedTCPFraming: a checkedConn over TCP passes the server's
// stream of DNS messages up to Go's resolver with the framing intact.
// RFC 1035 §4.2.2 and RFC 7766 §8: over TCP each message is preceded by a
// two-byte length, and the reader must not assume a message comes in one
// segment (or one read). The stream comes from a byte source that hands
// out fuzzer-chosen chunks, one per Read (a short read), and the caller
// reads with fuzzer-chosen buffer sizes. The reference splits the whole
// stream into frames by their prefixes, independently of any chunking:
//
//   - the bytes the caller gets are exactly the frames (prefix and
//     message) that check lets through, in order: the same bytes whatever
//     the chunk and read sizes; each with a length prefix that matches
//     what follows it;
//   - a frame check refuses never reaches the caller, not even in part:
//     the caller gets errBadAnswer for it (and, reading on, the next
//     frame);
//   - a frame whose prefix promises more bytes than come (a close inside
//     it) reaches the caller not at all, and ends the stream with io.EOF
//     or io.ErrUnexpectedEOF; a zero length is a frame with an empty
//     message;
//   - as a cross-check of check from the RFC: a TCP answer to the query
//     (same ID, its question whole, read from the bytes) with TC set is
//     never let through (RFC 1035 §4.1.1; over TCP the answer is whole,
//     checked.go: no partial sets). (A message cut inside its question is
//     let through: Go's resolver cannot read its question and drops it.)
//
// The query goes through Write as Go's resolver writes it, prefixed; the
// wrapper must send it unchanged.
func FuzzCheckedTCPFraming(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("api.test.", dns.TypeA)
	q.Id = 0x5eed
	query, err := q.Pack()
	if err != nil {
		f.Fatal(err)
	}
	pack := func(m *dns.Msg) []byte {
		out, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return out
	}
	good := pack(aReply(q, fiveIPs...))
	empty := pack(aReply(q))
	foreign := aReply(q, "10.0.0.1")
	foreign.Answer = append(foreign.Answer, &dns.A{
		Hdr: dns.RR_Header{Name: "evil.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
		A:   net.ParseIP("10.9.9.9").To4(),
	})
	tc := aReply(q, fiveIPs[:2]...)
	tc.Truncated = true
	otherID := aReply(q, fiveIPs...)
	otherID.Id++
	chain := aReply(q)
	chain.Answer = []dns.RR{
		&dns.CNAME{Hdr: dns.RR_Header{Name: "API.test.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 5}, Target: "real.test."},
		&dns.A{Hdr: dns.RR_Header{Name: "real.TEST.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP("10.0.0.7").To4()},
	}
	var many []string
	for i := range 120 {
		many = append(many, fmt.Sprintf("10.1.%d.%d", i/250, i%250+1))
	}
	big := pack(aReply(q, many...)) // over 1280 bytes: Go reads it in two ReadFulls
	built := builtAnswer(f, q.Id)

	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	withLen := func(n int, msg []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(n)), msg...) }
	fr := func(msg []byte) []byte { return withLen(len(msg), msg) }

	ones := bytes.Repeat([]byte{1}, 64)
	for _, s := range [][]byte{
		nil,
		{0},
		{0, 0},
		{0, 5},
		withLen(0, nil),
		fr(good),
		fr(empty),
		fr(built),
		fr(pack(chain)),
		fr(pack(otherID)),
		fr(pack(foreign)),
		fr(pack(tc)),
		fr(big),
		fr(good[:len(good)-10]),               // cut inside a record, prefix matching
		withLen(len(good)+1, good),            // prefix longer than what comes
		withLen(len(good)-1, good),            // prefix shorter: a trailing byte
		withLen(0xffff, good),                 // far longer
		cat(withLen(0, nil), fr(good)),        // zero length, then an answer
		cat(fr(good), fr(good)),               // two
		cat(fr(pack(foreign)), fr(good)),      // refused, then good
		cat(fr(pack(tc)), fr(empty), fr(big)), // refused, good, good
		cat(fr(good), []byte{0}),              // a lone byte after
		cat(fr(good), withLen(len(good), good[:7])),
		cat(fr(good), fr(pack(foreign)), withLen(3, nil)),
		[]byte(strings.Repeat("\x00\x01x", 40)),
	} {
		f.Add(s, []byte(nil), []byte(nil))
		f.Add(s, ones, []byte{2, 1, 0, 5})
		f.Add(s, []byte{1, 0, 3, 200, 7}, []byte{1})
	}
	f.Add(fr(big), []byte{2, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255}, []byte{2, 0, 255, 255, 255, 255, 255, 255}) // as Go's resolver reads

	refCheck := &checkedConn{tcp: true, query: query}
	f.Fuzz(func(t *testing.T, stream, chunks, reads []byte) {
		src := &chunkConn{data: stream, chunks: chunks, eofWithData: len(chunks)%2 == 1}
		c := checked(src, "tcp", 0)
		prefixed := append(binary.BigEndian.AppendUint16(nil, uint16(len(query))), query...)
		if n, err := c.Write(prefixed); n != len(prefixed) || err != nil || !bytes.Equal(src.written, prefixed) {
			t.Fatalf("Write(query) = %d, %v, sent %x; want %d, nil, the query unchanged", n, err, src.written, len(prefixed))
		}
		if cc := c.(*checkedConn); !bytes.Equal(cc.query, query) {
			t.Fatalf("query kept as %x, want %x", cc.query, query)
		}

		want := refFrames(stream, func(msg []byte) bool { return refCheck.check(msg) == use }, func(msg []byte) {
			if truncatedAnswer(msg, query) && refCheck.check(msg) == use {
				t.Errorf("check let through a TCP answer with TC set: %x", msg)
			}
		})

		var got []segment
		var cur []byte
		rsz := reads
		for i := 0; ; i++ {
			if i > 4*len(stream)+len(reads)+16 {
				t.Fatalf("stream %x: no end after %d reads (%d bytes so far)", stream, i, len(cur))
			}
			size := 700
			if len(rsz) > 0 {
				size, rsz = int(rsz[0]), rsz[1:]
			}
			p := make([]byte, size)
			n, err := c.Read(p)
			if n < 0 || n > len(p) {
				t.Fatalf("Read(%d bytes) = %d", len(p), n)
			}
			if n > 0 && err != nil {
				t.Fatalf("Read = %d, %v: bytes with an error", n, err)
			}
			cur = append(cur, p[:n]...)
			if err != nil {
				got = append(got, segment{cur, err})
				cur = nil
				if !errors.Is(err, errBadAnswer) {
					break
				}
			}
		}

		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("stream %x, chunks %v, reads %v:\ngot  %v\nwant %v\n"+format,
				append([]any{stream, chunks, reads, got, want}, args...)...)
		}
		if len(got) != len(want) {
			fail("segments differ")
		}
		for i := range got {
			g, w := got[i], want[i]
			if !bytes.Equal(g.data, w.data) {
				fail("segment %d: bytes differ", i)
			}
			if !errors.Is(g.err, w.err) && !(w.err == errCutFrame && (errors.Is(g.err, io.EOF) || errors.Is(g.err, io.ErrUnexpectedEOF))) {
				fail("segment %d: error %v, want %v", i, g.err, w.err)
			}
			// What was passed up frames itself: whole frames, each let through.
			for rest := g.data; len(rest) > 0; {
				if len(rest) < 2 || len(rest)-2 < int(binary.BigEndian.Uint16(rest)) {
					fail("segment %d: bytes %x end inside a frame", i, rest)
				}
				l := int(binary.BigEndian.Uint16(rest))
				if refCheck.check(rest[2:2+l]) != use {
					fail("segment %d: a refused answer reached the caller: %x", i, rest[2:2+l])
				}
				rest = rest[2+l:]
			}
		}
	})
}

// truncatedAnswer says whether msg answers query (RFC 1035 §4.1.1: same
// ID, QR set, one question, the query's question whole, names compared in
// ASCII case) with TC set: read from the bytes, without a DNS parser.
func truncatedAnswer(msg, query []byte) bool {
	qsec := query[12:]
	if len(msg) < 12+len(qsec) || msg[0] != query[0] || msg[1] != query[1] ||
		msg[2]&0x80 == 0 || msg[2]&0x02 == 0 || msg[4] != 0 || msg[5] != 1 {
		return false
	}
	for i, c := range qsec {
		d := msg[12+i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// errCutFrame stands, in the reference, for the end of a stream inside a
// frame: io.EOF or io.ErrUnexpectedEOF.
var errCutFrame = errors.New("stream ends inside a frame")

// segment is what the caller read up to an error, and the error.
type segment struct {
	data []byte
	err  error
}

func (s segment) String() string { return fmt.Sprintf("{%x %v}", s.data, s.err) }

// refFrames splits stream into RFC 1035 §4.2.2 frames: the frames ok
// takes are the caller's bytes; each it does not is an errBadAnswer; the
// stream's end is io.EOF between frames and errCutFrame inside one. seen
// is called with each whole message.
func refFrames(stream []byte, ok func([]byte) bool, seen func([]byte)) []segment {
	var out []segment
	var cur []byte
	for {
		if len(stream) == 0 {
			return append(out, segment{cur, io.EOF})
		}
		if len(stream) < 2 {
			return append(out, segment{cur, errCutFrame})
		}
		l := int(stream[0])<<8 | int(stream[1])
		if len(stream)-2 < l {
			return append(out, segment{cur, errCutFrame})
		}
		whole, msg := stream[:2+l], stream[2:2+l]
		stream = stream[2+l:]
		seen(msg)
		if ok(msg) {
			cur = append(cur, whole...)
			continue
		}
		out = append(out, segment{cur, errBadAnswer})
		cur = nil
	}
}

// builtAnswer is an answer to the query built with dnsmessage: two A
// records for the question's name, an authority NS and an additional A.
func builtAnswer(f *testing.F, id uint16) []byte {
	name := dnsmessage.MustNewName("api.test.")
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, Authoritative: true, RecursionDesired: true})
	b.EnableCompression()
	must := func(err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	must(b.StartAnswers())
	for _, ip := range [][4]byte{{10, 0, 0, 1}, {10, 0, 0, 2}} {
		must(b.AResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: ip}))
	}
	must(b.StartAuthorities())
	ns := dnsmessage.MustNewName("ns.test.")
	must(b.NSResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("test."), Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.NSResource{NS: ns}))
	must(b.StartAdditionals())
	must(b.AResource(dnsmessage.ResourceHeader{Name: ns, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: [4]byte{10, 0, 0, 53}}))
	out, err := b.Finish()
	must(err)
	return out
}

// chunkConn is a net.Conn over a byte stream: each Read returns at most
// the next chunk's size (then the rest at once), and io.EOF at the end,
// with the last bytes when eofWithData is set. Writes are kept.
type chunkConn struct {
	data        []byte
	chunks      []byte
	left        int  // bytes left of the current chunk
	started     bool // a chunk has been taken
	eofWithData bool
	written     []byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	if !c.started || c.left == 0 {
		c.started = true
		c.left = len(c.data)
		if len(c.chunks) > 0 {
			c.left, c.chunks = int(c.chunks[0]), c.chunks[1:]
		}
	}
	n := copy(p, c.data[:min(c.left, len(c.data))])
	c.data, c.left = c.data[n:], c.left-n
	if len(c.data) == 0 && c.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error) {
	c.written = append(c.written, p...)
	return len(p), nil
}

func (c *chunkConn) Close() error                     { return nil }
func (c *chunkConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *chunkConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }
