package proxy

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzStripHopByHop: whatever a client puts in Connection, stripping never
// panics and leaves none of the headers it named, nor any fixed hop-by-hop
// header, while other headers survive. The request is parsed from the wire,
// so what is stripped is what the raw-header scan found.
func FuzzStripHopByHop(f *testing.F) {
	for _, s := range []string{"close", "keep-alive, X-Foo", "X-Forwarded-For", ",,, ,", "Upgrade, te", "x-a,X-A , x-b"} {
		f.Add(s, "X-Foo")
	}
	f.Fuzz(func(t *testing.T, connection, other string) {
		// Keep the fuzzed strings inside their own header line (a name
		// with white space would fold into the line above).
		if strings.ContainsAny(connection, "\r\n") || strings.ContainsAny(other, " \t\r\n:") {
			t.Skip("not a single header line")
		}
		raw := "GET / HTTP/1.1\r\nHost: h\r\nConnection: " + connection + "\r\nkeep-alive: 300\r\n" +
			"Transfer-Encoding: chunked\r\nX-Survivor: yes\r\n"
		if other != "" {
			raw += other + ": v\r\n"
		}
		raw += "\r\n0\r\n\r\n"
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Skip("not a request fasthttp accepts")
		}
		h := &req.Header
		stripHopByHop(h, scanRequest(h.RawHeaders()), nil)
		for _, name := range hopByHop {
			if len(h.PeekBytes(name)) != 0 {
				t.Fatalf("hop-by-hop %s left after strip (Connection: %q)", name, connection)
			}
		}
		named := map[string]bool{}
		for tok := range strings.SplitSeq(connection, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" || strings.EqualFold(tok, "close") || strings.EqualFold(tok, "keep-alive") {
				continue
			}
			named[strings.ToLower(tok)] = true
			if len(h.Peek(tok)) != 0 {
				t.Fatalf("header %q named in Connection survived", tok)
			}
		}
		if !named["x-survivor"] && string(h.Peek("X-Survivor")) != "yes" {
			t.Fatalf("unrelated header removed (Connection: %q)", connection)
		}
	})
}

// FuzzPrepareRequest: the upstream request built from the raw-header scan
// is byte for byte the one built when every header is assumed present (the
// slow path that deletes and looks up each name), for any header block and
// body (chunked bodies bring trailer sections) and any forwarding settings
// (fwBits: see fuzzForwarding).
func FuzzPrepareRequest(f *testing.F) {
	f.Add("Connection: keep-alive, X-A\r\nX-A: 1\r\nX-Forwarded-For: 1.2.3.4\r\n", "", uint8(0))
	f.Add("x-forwarded-proto: https\r\nX-Forwarded-Host: evil\r\nx-request-id: abc\r\n", "", uint8(0))
	f.Add("X-Request-Id:\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: x\r\n", "", uint8(0))
	f.Add("Trailer: X-T\r\nKeep-Alive: 5\r\nProxy-Connection: close\r\nCookie: a=b\r\n", "", uint8(0))
	f.Add("Connection: keep-alive,\r\n X-Secret\r\nX-Secret: 1\r\n", "", uint8(0))
	f.Add("Transfer-Encoding: chunked\r\nTrailer: Upgrade\r\n", "1\r\na\r\n0\r\nUpgrade: h2c\r\n\r\n", uint8(0))
	f.Add("Transfer-Encoding: chunked\r\n", "1\r\na\r\n0\r\nUpgrade: h2c\r\nX-Request-Id: c\r\n\r\n", uint8(0))
	f.Add("Content-Length: 3\r\n", "abc", uint8(0))
	f.Add("X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n", "", uint8(1))
	f.Add("X-Forwarded-For: 1.2.3.4\r\nConnection: X-Forwarded-For\r\n", "", uint8(2))
	f.Add("x-forwarded-proto: https\r\nX-Forwarded-Host: evil\r\nx-request-id: abc\r\n", "", uint8(0x1e))
	f.Add("X_Forwarded_For: 6.6.6.6\r\nx_forwarded_proto: https\r\nX-Forwarded_Host: evil\r\nX_Other: 1\r\n", "", uint8(0))
	f.Add("X_Forwarded_For: 6.6.6.6\r\nx_forwarded_proto: https\r\n", "", uint8(0x0e))
	f.Fuzz(func(t *testing.T, headers, body string, fwBits uint8) {
		fw := fuzzForwarding(fwBits)
		method := "GET"
		if body != "" {
			method = "POST"
		}
		raw := method + " /p?q HTTP/1.1\r\nHost: example.com\r\n" + headers + "\r\n" + body
		build := func(found func(*fasthttp.RequestHeader) headerSet) string {
			var ctx fasthttp.RequestCtx
			if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Skip("not a request fasthttp accepts")
			}
			h := &ctx.Request.Header
			prepareRequest(&ctx, h.Host(), found(h), fw, nil)
			out := ctx.Request.String()
			// The request id is random unless the client sent one.
			const id = "\r\nX-Request-Id: "
			if i := strings.LastIndex(out, id); i >= 0 {
				if j := strings.Index(out[i+2:], "\r\n"); j == len(id)-2+32 {
					out = out[:i] + out[i+2+j:]
				}
			}
			return out
		}
		fast := build(func(h *fasthttp.RequestHeader) headerSet { return scanRequest(h.RawHeaders()) })
		slow := build(func(*fasthttp.RequestHeader) headerSet { return hAll })
		if fast != slow {
			t.Fatalf("scanned headers differ from the full rewrite\nraw:\n%s\nscanned:\n%s\nfull:\n%s", raw, fast, slow)
		}
	})
}

// fuzzForwarding maps a fuzzer's byte to forwarding settings: bits 0-1 the
// X-Forwarded-For mode (3 is append), bits 2, 3 and 4 turn off
// X-Forwarded-Proto, X-Forwarded-Host and the request id; 0 is the default.
func fuzzForwarding(b uint8) forwarding {
	fw := forwarding{xff: xffMode(b & 3), proto: b&4 == 0, host: b&8 == 0, requestID: b&16 == 0}
	if fw.xff > xffPass {
		fw.xff = xffAppend
	}
	return fw
}

// FuzzNormalizeHost: never panics, never returns upper case or a port.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"Example.COM:8080", "[::1]:80", "a.b.", "", ":", "[", "x:y:z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		var buf [256]byte
		got := normalizeHost([]byte(host), buf[:])
		if len(host) <= len(buf) && bytes.ContainsAny(got, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("normalizeHost(%q) = %q has upper case", host, got)
		}
		if len(got) > len(host) {
			t.Fatalf("normalizeHost(%q) = %q grew", host, got)
		}
	})
}

// FuzzQueryValue: the hash-key query parser never panics and only ever
// returns a value that was in the query after name=.
func FuzzQueryValue(f *testing.F) {
	f.Add("a=1&uid=42&b", "uid")
	f.Add("uid", "uid")
	f.Add("&&=&", "")
	f.Fuzz(func(t *testing.T, query, name string) {
		v := queryValue([]byte(query), []byte(name))
		if v != nil && !strings.Contains(query, name+"="+string(v)) {
			t.Fatalf("queryValue(%q, %q) = %q, not in the query", query, name, v)
		}
	})
}

// FuzzSmuggled: agrees with a plain line-by-line reading of the headers.
func FuzzSmuggled(f *testing.F) {
	f.Add("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n")
	f.Add("content-length:1\ntransfer-encoding:x")
	f.Add("X: y\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		var cl, te bool
		for _, line := range strings.Split(raw, "\n") {
			l := strings.ToLower(line)
			cl = cl || strings.HasPrefix(l, "content-length:")
			te = te || strings.HasPrefix(l, "transfer-encoding:")
		}
		if raw == "" {
			return // unparsed: nothing to scan
		}
		if got := scanRequest([]byte(raw)).smuggled(); got != (cl && te) {
			t.Fatalf("smuggled(%q) = %v, want %v", raw, got, cl && te)
		}
	})
}

// FuzzRequestHead: for any request the handler would send upstream with
// its body apart from the head (sendsBodyApart), the head appendRequestHead
// builds, followed by the body, is byte for byte what Request.Write sends.
func FuzzRequestHead(f *testing.F) {
	f.Add("POST", "/upload?x=1", "Content-Type: text/plain\r\n", strings.Repeat("b", 2048))
	f.Add("PUT", "http://other/abs?q", "Cookie: a=b\r\nConnection: close\r\n", strings.Repeat("c", 1500))
	f.Add("DELETE", "/a/../b//c?%zz", "User-Agent: x\r\nContent-Type: a/b\r\n", strings.Repeat("d", 4096))
	f.Add("GET", "/", "Content-Type:\r\nX-Forwarded-For: 1.2.3.4\r\n", strings.Repeat("e", 1024))
	f.Fuzz(func(t *testing.T, method, target, headers, body string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: fixed\r\n" + headers +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		// build reads raw as fasthttp's server does and prepares it as
		// forward does before the upstream write.
		build := func() *fasthttp.Request {
			ctx := new(fasthttp.RequestCtx)
			if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Skip("not a request fasthttp accepts")
			}
			h := &ctx.Request.Header
			found := scanRequest(h.RawHeaders())
			if code, _ := rejected(ctx, found); code != 0 {
				t.Skip("refused before any upstream write")
			}
			prepareRequest(ctx, h.Host(), found, fuzzForwarding(0), nil)
			h.SetHost("127.0.0.1:8080") // a backend's address, as for preserve_host: false
			return &ctx.Request
		}
		apart, whole := build(), build()
		if !sendsBodyApart(apart) {
			t.Skip("takes Request.Write's path")
		}
		var want bytes.Buffer
		w := bufio.NewWriter(&want)
		if err := whole.Write(w); err != nil {
			t.Fatalf("Request.Write refuses a request sent apart: %v", err)
		}
		_ = w.Flush()
		got := append(appendRequestHead(nil, apart, len(apart.Body())), apart.Body()...)
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("head and body sent apart differ from Request.Write\nraw:\n%q\napart:\n%q\nwrite:\n%q",
				raw, trimMiddle(got), trimMiddle(want.Bytes()))
		}
	})
}

// FuzzTargetHost: for any request-target checkTarget accepts, targetHost
// finds a host exactly for the absolute form, and that host is the
// authority fasthttp's URI parser finds (it lower-cases it and decodes
// %-escapes), with nothing
// of the path, query or userinfo in it.
func FuzzTargetHost(f *testing.F) {
	for _, t := range []string{"/x", "*", "http://a.example/x", "HTTP://A.Example:8080?q", "http://a", "http:///x", "http://u@a/", "https://a/"} {
		f.Add(t)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if code, _ := checkTarget([]byte(target)); code != 0 {
			return
		}
		host := targetHost([]byte(target))
		absolute := len(target) > 0 && target[0] != '/' && target != "*"
		switch {
		case !absolute && host != nil:
			t.Fatalf("targetHost(%q) = %q, want nil for origin form and *", target, host)
		case !absolute:
			return
		case len(host) == 0 || bytes.ContainsAny(host, "/?@#"):
			t.Fatalf("targetHost(%q) = %q, want a non-empty authority", target, host)
		}
		var u fasthttp.URI
		if err := u.Parse(nil, []byte(target)); err != nil || bytes.IndexByte(host, '%') >= 0 {
			// Refused by fasthttp's server before the handler; or
			// percent-encoded, which fasthttp decodes and sluice, as
			// with a Host header, keeps as received.
			return
		}
		if !bytes.EqualFold(u.Host(), host) {
			t.Fatalf("targetHost(%q) = %q, fasthttp's URI host %q", target, host, u.Host())
		}
	})
}

// FuzzEmptyLine: for any bytes a backend sends, emptyLine finds the same
// end of head as a plain line-by-line reading (a line ends at LF, a CR
// before it belongs to the ending), and says bare exactly when that
// ending is other than CRLF after CRLF; crlfLines then leaves no bare LF
// and changes nothing but the endings.
func FuzzEmptyLine(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 200 OK\n\n", "a\r\nb\n\r\nc\r\n\r\n", "\n", "\r\n\r", "x\r\r\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end, bare, ok := emptyLine(b)
		wantEnd, wantBare, wantOK := 0, false, false
		prevCRLF, start := false, 0
		for i, c := range b {
			if c != '\n' {
				continue
			}
			line := b[start:i]
			crlf := len(line) > 0 && line[len(line)-1] == '\r'
			if crlf {
				line = line[:len(line)-1]
			}
			if len(line) == 0 && start > 0 {
				wantEnd, wantBare, wantOK = i+1, !(crlf && prevCRLF), true
				break
			}
			prevCRLF, start = crlf, i+1
		}
		if end != wantEnd || bare != wantBare || ok != wantOK {
			t.Fatalf("emptyLine(%q) = %d, %v, %v; line by line: %d, %v, %v", b, end, bare, ok, wantEnd, wantBare, wantOK)
		}
		fixed := crlfLines(nil, b)
		if bytes.Contains(bytes.ReplaceAll(fixed, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatalf("crlfLines(%q) = %q left a bare LF", b, fixed)
		}
		if !bytes.Equal(bytes.ReplaceAll(fixed, []byte("\r\n"), []byte("\n")), bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))) {
			t.Fatalf("crlfLines(%q) = %q changed more than line endings", b, fixed)
		}
	})
}

// hintCounter is an earlyHinter that counts the 103s passed on.
type hintCounter struct{ n int }

func (h *hintCounter) EarlyHints() error { h.n++; return nil }

// FuzzReadResponse: any bytes a backend sends read without a panic; at
// most maxHints 103s are passed on, one per 103 head; a response read
// whole is a final one (not a 1xx other than 101), as ReadLimitBody's is,
// with a status from 100 to 599; read with a body loan, it is the same.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\n\n",
		"HTTP/1.1 103\r\n\r\nHTTP/1.1 103 \r\n\r\nHTTP/1.0 200 OK\r\n\r\nbody",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"HTTP/1.1 000 X\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 103\r\n\r\nHTTP/1.1 099 X\nContent-Length: 2\n\nok",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp fasthttp.Response
		var h hintCounter
		_, err := readResponse(&resp, bufio.NewReaderSize(bytes.NewReader(data), 4096), 1<<16, &h, nil)
		if h.n > maxHints || h.n > bytes.Count(data, []byte(" 103")) {
			t.Fatalf("%d early hints passed on from %q", h.n, data)
		}
		if code := resp.StatusCode(); err == nil && (code < 200 && code != 101 || code > 599) {
			t.Fatalf("read a %d as the final answer from %q", code, data)
		}
		// Read into a lent buffer (readLentBody), the same answer.
		var lent fasthttp.Response
		r := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		_, lentErr := readResponse(&lent, r, 1<<16, nil, &bodyLoan{pools: &bodyPools{}})
		if (lentErr == nil) != (err == nil) {
			t.Fatalf("error %v with a loan, %v without, from %q", lentErr, err, data)
		}
		if err == nil && (lent.StatusCode() != resp.StatusCode() || !bytes.Equal(lent.Body(), resp.Body()) ||
			lent.Header.ContentLength() != resp.Header.ContentLength()) {
			t.Fatalf("with a loan %d %q, without %d %q, from %q", lent.StatusCode(), lent.Body(), resp.StatusCode(), resp.Body(), data)
		}
	})
}

// FuzzBothLengths: lengthFields agrees with a plain reading of the head's
// lines (name before the colon, compared in any case).
func FuzzBothLengths(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\ncontent-length:2\ntransfer-encoding :x\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length \t: 2\r\nTransfer-Encoding\t:chunked\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTrailer: a\r\nTRAILER :\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		var cl, te, tr bool
		lines := strings.Split(string(head), "\n")
		for _, line := range lines[:len(lines)-1] { // the part after the last LF is no line
			name, _, ok := strings.Cut(line, ":")
			name = strings.TrimRight(name, " \t")
			cl = cl || ok && strings.EqualFold(name, "content-length")
			te = te || ok && strings.EqualFold(name, "transfer-encoding")
			tr = tr || ok && strings.EqualFold(name, "trailer")
		}
		if gotCL, gotTE, gotTr, _ := lengthFields(head); gotCL != cl || gotTE != te || gotTr != tr {
			t.Fatalf("lengthFields(%q) = %v, %v, %v, want %v, %v, %v", head, gotCL, gotTE, gotTr, cl, te, tr)
		}
	})
}
