package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestHashKeyKinds: every hash_key kind keeps one key on one backend
// through the proxy, and a request without the key is still served.
func TestHashKeyKinds(t *testing.T) {
	tests := []struct {
		hashKey string
		with    func(req *http.Request, key string) // puts key into the request
	}{
		{"header:X-User", func(r *http.Request, k string) { r.Header.Set("X-User", k) }},
		{"cookie:session", func(r *http.Request, k string) { r.AddCookie(&http.Cookie{Name: "session", Value: k}) }},
		{"query:uid", func(r *http.Request, k string) { r.URL.RawQuery = "a=1&uid=" + k }},
		{"path", func(r *http.Request, k string) { r.URL.Path = "/items/" + k }},
		{"host", func(r *http.Request, k string) { r.Host = k + ".example" }},
		{"source_ip", func(r *http.Request, k string) {}},
	}
	for _, tt := range tests {
		t.Run(tt.hashKey, func(t *testing.T) {
			bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
			yml := strings.Replace(poolYAML("maglev", bs, nil), "    backends:", "    hash_key: \""+tt.hashKey+"\"\n    backends:", 1)
			px := startProxy(t, yml)
			c := testClient(t)
			do := func(key string) (int, string) {
				req, _ := http.NewRequest("GET", "http://"+px.addr+"/", nil)
				if key != "" {
					tt.with(req, key)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode, resp.Header.Get("X-Backend")
			}
			used := map[string]bool{}
			for u := range 12 {
				key := fmt.Sprintf("k%d", u)
				_, first := do(key)
				for range 3 {
					if code, got := do(key); code != 200 || got != first {
						t.Fatalf("key %s: %d from %s, want 200 from %s", key, code, got, first)
					}
				}
				used[first] = true
			}
			if tt.hashKey != "source_ip" && len(used) < 2 {
				t.Errorf("12 keys all went to %v, want a spread", used)
			}
			if code, _ := do(""); code != 200 {
				t.Errorf("request without the key = %d, want 200 (random pick)", code)
			}
		})
	}
}

func TestErrorKinds(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	read := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	tests := []struct {
		name      string
		give      error
		kind      errKind
		code      int
		retryGET  bool
		retryPOST bool
	}{
		{"refused", dial, kindConnect, 502, true, true},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, kindConnectTimeout, 504, true, true},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, kindTimeout, 504, false, false},
		{"response timeout", fasthttp.ErrTimeout, kindTimeout, 504, false, false},
		{"no free connection", fasthttp.ErrNoFreeConns, kindNoConn, 503, true, true},
		{"closed", fasthttp.ErrConnectionClosed, kindReset, 502, true, false},
		{"reset on read", read, kindReset, 502, true, false},
		{"eof", io.EOF, kindReset, 502, true, false},
		{"too large", fasthttp.ErrBodyTooLarge, kindTooLarge, 502, false, false},
		{"anything else", errors.New("malformed"), kindOther, 502, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorKind(tt.give); got != tt.kind {
				t.Errorf("errorKind(%v) = %v, want %v", tt.give, got, tt.kind)
			}
			if code, _ := classify(tt.give); code != tt.code {
				t.Errorf("classify(%v) = %d, want %d", tt.give, code, tt.code)
			}
			var get, post fasthttp.Request
			get.Header.SetMethod("GET")
			post.Header.SetMethod("POST")
			if got := retryable(tt.kind, &get); got != tt.retryGET {
				t.Errorf("retryable(GET) = %v, want %v", got, tt.retryGET)
			}
			if got := retryable(tt.kind, &post); got != tt.retryPOST {
				t.Errorf("retryable(POST) = %v, want %v", got, tt.retryPOST)
			}
		})
	}
}
