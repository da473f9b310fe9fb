package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/config"
)

// rawExchange sends raw on a fresh connection and returns the response.
func rawExchange(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	resp, _, _ := rawExchangeRead(t, addr, raw)
	return resp
}

// rawExchangeRead sends raw on a new connection and reads one answer and
// its body, under a 5 s deadline: the body read's error is the caller's
// to judge.
func rawExchangeRead(t *testing.T, addr, raw string) (*http.Response, []byte, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, err
}

// TestClientForwardedHeadersCannotSpoof: repeated X-Forwarded-For headers
// become one list ending with the real client, and the client's own
// X-Forwarded-Host/Proto never pass, with or without a Host.
func TestClientForwardedHeadersCannotSpoof(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	tests := []struct {
		name, raw        string
		wantXFF, wantXFH string
		wantHost         string
	}{
		{"two XFF headers",
			"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n",
			"1.1.1.1, 2.2.2.2, 127.0.0.1", "h", "h"},
		{"no Host, forged XFH",
			"GET / HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n\r\n",
			"127.0.0.1", "", b.addr()},
		{"two XFH headers",
			"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: a\r\nX-Forwarded-Host: b\r\n\r\n",
			"127.0.0.1", "h", "h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp := rawExchange(t, px.addr, tt.raw); resp.StatusCode != 200 {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			r, _ := b.lastRequest()
			if got := strings.Join(r.Header.Values("X-Forwarded-For"), " | "); got != tt.wantXFF {
				t.Errorf("upstream X-Forwarded-For = %q, want %q", got, tt.wantXFF)
			}
			if got := strings.Join(r.Header.Values("X-Forwarded-Host"), " | "); got != tt.wantXFH {
				t.Errorf("upstream X-Forwarded-Host = %q, want %q", got, tt.wantXFH)
			}
			if got := strings.Join(r.Header.Values("X-Forwarded-Proto"), " | "); got != "http" {
				t.Errorf("upstream X-Forwarded-Proto = %q, want http", got)
			}
			if r.Host != tt.wantHost {
				t.Errorf("upstream Host = %q, want %q", r.Host, tt.wantHost)
			}
		})
	}
}

// TestHostlessRequestsDoNotEject: requests a client can send at will must
// not count against a backend.
func TestHostlessRequestsDoNotEject(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	px := startProxy(t, modalYAML(bs, "    outlier_detection: { consecutive_failures: 3, base_ejection_time: 30s, max_ejection_percent: 100 }\n"))
	for range 8 {
		if resp := rawExchange(t, px.addr, "GET / HTTP/1.0\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("HTTP/1.0 without Host = %d, want 200", resp.StatusCode)
		}
	}
	for _, b := range bs {
		if st := stateOf(t, px, b.addr).State; st != StateHealthy {
			t.Errorf("backend %s = %s after Host-less requests, want healthy", b.name, st)
		}
	}
}

// TestConnectionLimitDoesNotEject: sluice's own max_conns_per_backend is
// not the backend's failure.
func TestConnectionLimitDoesNotEject(t *testing.T) {
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) { time.Sleep(300 * time.Millisecond) })
	yml := strings.Replace(poolYAML("round_robin", []*testBackend{b}, nil), "    backends:",
		"    outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s, max_ejection_percent: 100 }\n    backends:", 1)
	px := startProxy(t, yml+"limits: { max_conns_per_backend: 1 }\n")
	done := make(chan int, 8)
	for range 8 {
		go func() {
			resp, err := http.Get("http://" + px.addr + "/")
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	codes := map[int]int{}
	for range 8 {
		codes[<-done]++
	}
	if codes[503] == 0 {
		t.Fatalf("codes %v: want some 503 from the connection limit", codes)
	}
	if st := stateOf(t, px, b.addr()).State; st != StateHealthy {
		t.Errorf("backend = %s after hitting sluice's connection limit, want healthy", st)
	}
}

// TestHealthAndEjectionEndWithTheirConfig: removing health_check or
// changing outlier_detection must not leave backends out for good.
func TestHealthAndEjectionEndWithTheirConfig(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	px := startProxy(t, modalYAML(bs, fastChecks+"    outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s }\n"))
	apply := func(extra string) {
		t.Helper()
		cfg, err := config.Parse("t.yaml", []byte(modalYAML(bs, extra)))
		if err != nil {
			t.Fatal(err)
		}
		if err := px.ctrl.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	bs[1].healthStatus.Store(503)
	waitFor(t, "b unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, bs[1].addr).Healthy })
	apply("    outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s }\n")
	if !stateOf(t, px, bs[1].addr).Healthy {
		t.Error("backend still unhealthy after its health check was removed")
	}
	bs[0].trafficStatus.Store(500)
	c := testClient(t)
	for range 10 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	waitFor(t, "a ejected", time.Second, func() bool { return stateOf(t, px, bs[0].addr).State == StateEjected })
	bs[0].trafficStatus.Store(200)
	apply("    outlier_detection: { consecutive_failures: 3, base_ejection_time: 30s }\n")
	if st := stateOf(t, px, bs[0].addr).State; st != StateHealthy {
		t.Errorf("backend = %s after outlier_detection changed, want healthy", st)
	}
}

// TestStickyKeepsCookieHeaderIntact: reading the affinity cookie must not
// rewrite the Cookie header sent upstream.
func TestStickyKeepsCookieHeaderIntact(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("sticky", []*testBackend{b}, nil))
	raw := "GET / HTTP/1.1\r\nHost: h\r\nCookie: c=\"q r\"; sluice_affinity=zzz\r\n\r\n"
	rawExchange(t, px.addr, raw)
	r, _ := b.lastRequest()
	if got := r.Header.Get("Cookie"); got != `c="q r"; sluice_affinity=zzz` {
		t.Errorf("upstream Cookie = %q, want it byte for byte", got)
	}
}

// TestStickySecret: with a secret the cookie value is an HMAC, stable
// across requests, and still routes back.
func TestStickySecret(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil)}
	yml := strings.Replace(poolYAML("round_robin", bs, nil), "    backends:", "    sticky: { cookie: aff, secret: s3cret }\n    backends:", 1)
	px := startProxy(t, yml)
	resp, err := http.Get("http://" + px.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var value string
	for _, ck := range resp.Cookies() {
		if ck.Name == "aff" {
			value = ck.Value
		}
	}
	if len(value) != 24 {
		t.Fatalf("aff cookie = %q, want a 24-hex HMAC", value)
	}
	first := resp.Header.Get("X-Backend")
	for range 5 {
		req, _ := http.NewRequest("GET", "http://"+px.addr+"/", nil)
		req.AddCookie(&http.Cookie{Name: "aff", Value: value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Backend"); got != first {
			t.Fatalf("with the cookie: %s, want %s", got, first)
		}
	}
}

// TestUpstreamIdleBelowBackendKeepAlive: with upstream_idle below the
// backend's keep-alive timeout, POSTs never land on a connection the
// backend is closing.
func TestUpstreamIdleBelowBackendKeepAlive(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	srv.Config.IdleTimeout = 150 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	yml := fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p: { algorithm: round_robin, backends: [{ address: %s }] }\n", srv.Listener.Addr())
	px := startProxy(t, yml+"timeouts: { upstream_idle: 50ms }\n")
	failed := 0
	for range 8 {
		resp, err := http.Post("http://"+px.addr+"/", "text/plain", strings.NewReader("x"))
		if err != nil || resp.StatusCode != 200 {
			failed++
		}
		if err == nil {
			resp.Body.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
	if failed != 0 {
		t.Errorf("%d of 8 POSTs failed, want 0", failed)
	}
}

// TestResponseTooLarge: a response over max_response_bytes is a 502.
func TestResponseTooLarge(t *testing.T) {
	var calls atomic.Int64
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprint(w, strings.Repeat("x", 4096))
	})
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+"limits: { max_response_bytes: 1024 }\n")
	code, _, body := get(t, testClient(t), "http://"+px.addr+"/", nil)
	if code != 502 || !strings.Contains(body, "too large") {
		t.Errorf("GET = %d %q, want 502 upstream response too large", code, body)
	}
	if calls.Load() != 1 {
		t.Errorf("backend called %d times, want 1 (no retry)", calls.Load())
	}
}
