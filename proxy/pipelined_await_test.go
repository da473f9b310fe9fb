package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
)

// TestPipelinedLongAnswersAwait: two requests pipelined in one write whose
// answers are longer than the server's write buffer. The answers' writes
// may wait for the client's next request (netconn's AwaitNextRequest),
// but not the write that ends the first answer while the second request
// already sits in the server's reader (a body long enough to be written
// straight from it: 8192, 10000), nor a full buffer in the middle of the
// second answer (the first's tail and the second's start: 4097, 5000):
// the client would wait for the second answer and the server for the
// client, until timeouts.idle. (TestLongResponses wraps the connection,
// so its handler asks for no wait.)
func TestPipelinedLongAnswersAwait(t *testing.T) {
	b := startBackend(t, "b1", sizedBody)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	for _, n := range []int{4097, 5000, 8192, 10000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c, br := dialProxy(t, px.addr) // 5 s deadline; timeouts.idle is 90 s
			req := fmt.Sprintf("GET /?n=%d HTTP/1.1\r\nHost: test\r\n\r\n", n)
			if _, err := io.WriteString(c, req+req); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("answer %d: %v", i, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, patterned(n)) {
					t.Fatalf("answer %d: status %d, %d body bytes, %v; want 200 and the %d bytes",
						i, resp.StatusCode, len(body), err, n)
				}
			}
		})
	}
}

// sizedBody answers with the ?n= bytes of patterned(n) and their length.
func sizedBody(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	w.Header().Set("Content-Length", strconv.Itoa(n))
	_, _ = w.Write(patterned(n))
}
