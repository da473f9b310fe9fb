package proxy

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzChunkedFraming: a chunked answer that readResponse accepts
// must be one that a plain RFC 9112 §7.1 reading (r25ChunkedRef)
// accepts too, with the same body; and when the connection is to be
// reused (suspect false), readResponse must have read exactly through the
// end of that message, no more and no less: what it leaves is read as
// the next answer on the connection. No fuzz target compared the
// framing of a chunked answer with a reference; FuzzReadResponse only
// checks the status and the loan, FuzzSkipTrailer the trailer alone.
func FuzzChunkedFraming(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"005\r\nhello\r\n00\r\n\r\n",
		"A\r\n0123456789\r\n0\r\n\r\n",
		"5\nhello\n0\n\n",
		"5\r\nhello\r\n0\r\n",
		"5\r\nhelloXX0\r\n\r\n",
		"5 \r\nhello\r\n0\r\n\r\n",
		"5\r\nhello\r\n0\r\nX: 1\nY: 2\r\n\r\n",
		"-5\r\nhello\r\n0\r\n\r\n",
		"0x5\r\nhello\r\n0\r\n\r\n",
		"+5\r\nhello\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s+"HTTP/1.1 204 No Content\r\n\r\n"), true)
	}
	f.Fuzz(func(t *testing.T, chunks []byte, trailerField bool) {
		head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
		if trailerField {
			head += "Trailer: X-T\r\n" // readResponse's takeFixed path
		}
		data := append([]byte(head+"\r\n"), chunks...)
		src := bytes.NewReader(data)
		r := bufio.NewReaderSize(src, 4096)
		var resp fasthttp.Response
		suspect, err := readResponse(&resp, r, 1<<16, nil, nil)
		if err != nil {
			return
		}
		read := len(data) - src.Len() - r.Buffered()
		body, n, ok := r25ChunkedRef(chunks)
		if !ok {
			t.Fatalf("readResponse accepted chunks %q (body %q) that RFC 9112 §7.1 refuses", chunks, resp.Body())
		}
		if !bytes.Equal(resp.Body(), body) {
			t.Fatalf("chunks %q: body %q, RFC 9112 §7.1 reads %q", chunks, resp.Body(), body)
		}
		if end := len(head) + 2 + n; !suspect && read != end {
			t.Fatalf("chunks %q: readResponse read %d bytes and keeps the connection, the message is %d (left %q)", chunks, read, end, data[read:])
		}
	})
}

// r25ChunkedRef reads a chunked body (RFC 9112 §7.1) from b: the
// decoded body, the length of the chunked message through its trailer
// section's empty line, and whether it is well-formed. It is lenient
// where leniency cannot move the message's end (a chunk extension's
// content, any bytes but CR and LF; a trailer field line's, any bytes but
// LF: sluice discards the section unread, and RFC 9112 §2.2 lets a
// recipient take a bare CR for SP, which ends no line), strict on
// framing: 1*HEXDIG sizes, CRLF after each line and each chunk's data.
func r25ChunkedRef(b []byte) (body []byte, n int, ok bool) {
	line := func(bareCR bool) ([]byte, bool) { // a line through CRLF, no other LF (nor CR unless bareCR)
		i := bytes.IndexByte(b[n:], '\n')
		if i < 1 || b[n+i-1] != '\r' || !bareCR && bytes.IndexByte(b[n:n+i-1], '\r') >= 0 {
			return nil, false
		}
		l := b[n : n+i-1]
		n += i + 1
		return l, true
	}
	for {
		l, ok := line(false)
		if !ok {
			return nil, 0, false
		}
		size, digits := 0, 0
		for digits < len(l) {
			c := l[digits]
			var v int
			switch {
			case '0' <= c && c <= '9':
				v = int(c - '0')
			case 'a' <= c && c <= 'f':
				v = int(c-'a') + 10
			case 'A' <= c && c <= 'F':
				v = int(c-'A') + 10
			default:
				v = -1
			}
			if v < 0 {
				break
			}
			if size > 1<<20 {
				return nil, 0, false // beyond any maxBody here
			}
			size = size*16 + v
			digits++
		}
		if digits == 0 || digits < len(l) && l[digits] != ';' && l[digits] != ' ' && l[digits] != '\t' {
			return nil, 0, false
		}
		if size == 0 {
			break
		}
		if len(b)-n < size+2 || b[n+size] != '\r' || b[n+size+1] != '\n' {
			return nil, 0, false
		}
		body = append(body, b[n:n+size]...)
		n += size + 2
	}
	for { // trailer section: field lines, then an empty line
		l, ok := line(true)
		if !ok {
			return nil, 0, false
		}
		if len(l) == 0 {
			return body, n, true
		}
	}
}
