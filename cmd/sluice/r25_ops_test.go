package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// r25OpsScrape parses the admin's /metrics with the Prometheus text
// parser (a body that does not parse fails the test) and returns the
// sum of the family's samples whose labels hold every want pair.
func r25OpsScrape(t *testing.T, admin, family string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	sum := 0.0
	mf := mfs[family]
	if mf == nil {
		return 0
	}
	for _, m := range mf.GetMetric() {
		ok := true
		for k, v := range want {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestOpsReloadKeepsTrafficAndCounters: while a client sends
// requests without pause, a rejected reload (400 naming file, line and
// field) and an accepted one that replaces every upstream client (new
// timeouts) both leave every request answered 200, the running config
// kept by the first; sluice_requests_total counts every request across
// both, never going back.
func TestOpsReloadKeepsTrafficAndCounters(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	render := func(extra string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\n%sroutes: [{pool: p}]\npools:\n  p:\n    backends:\n      - {address: %s}\n", listen, admin, extra, up.addr)
	}
	path := writeConfig(t, render(""))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	var sent, bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := c.Get("http://" + listen + "/x")
			sent.Add(1)
			if err != nil {
				bad.Add(1)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				bad.Add(1)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	waitUntil(t, "traffic", 5*time.Second, func() bool { return sent.Load() > 20 })

	before := r25OpsScrape(t, admin, "sluice_requests_total", map[string]string{"pool": "p"})
	// Line 6 holds the bad value.
	if err := os.WriteFile(path, []byte(render("retries: {attempts: 0}\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := adminReload(t, admin)
	if code != 400 || !strings.Contains(body, filepath.Base(path)+":5: retries.attempts:") {
		t.Errorf("rejected reload = %d %s, want 400 naming %s:5: retries.attempts", code, body, path)
	}
	mid := r25OpsScrape(t, admin, "sluice_requests_total", map[string]string{"pool": "p"})
	if err := os.WriteFile(path, []byte(render("timeouts: {response: 7s, connect: 1s}\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatalf("good reload = %d %s", code, body)
	}
	n := sent.Load()
	waitUntil(t, "traffic after the reload", 5*time.Second, func() bool { return sent.Load() > n+20 })
	after := r25OpsScrape(t, admin, "sluice_requests_total", map[string]string{"pool": "p"})
	if !(before <= mid && mid <= after) || after <= before {
		t.Errorf("sluice_requests_total went %v, %v, %v across reloads, want it to grow", before, mid, after)
	}
	if b := bad.Load(); b != 0 {
		t.Errorf("%d of %d requests failed across the reloads", b, sent.Load())
	}
	if f := r25OpsScrape(t, admin, "sluice_config_reloads_total", map[string]string{"result": "failure"}); f != 1 {
		t.Errorf("reload failures = %v, want 1", f)
	}
	if g := r25OpsScrape(t, admin, "sluice_config_generation", nil); g != 2 {
		t.Errorf("generation = %v, want 2", g)
	}
}

// TestOpsAccessLogFields: every field the README lists is in the
// line, with its documented meaning, for a chunked upload whose path,
// Host and request id are hostile; the line is one valid JSON object.
func TestOpsAccessLogFields(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\n"+
		"access_log: {enabled: true, path: %s}\nroutes: [{match: {host: api.example.com, path_prefix: /v1/}, pool: p}]\npools:\n  p:\n    backends:\n      - {address: %s}\n",
		listen, admin, logPath, up.addr))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	c, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "POST /v1/a%0Ab%22c%1B%E2%80%A8%C2%9B%FF?secret=1 HTTP/1.1\r\nHost: API.example.com\r\n" +
		"X-Request-Id: id\"\\\xe2\x80\xa9\xc2\x9b\xff\tz\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, respBody)
	}

	var raw []byte
	waitUntil(t, "access log line", 5*time.Second, func() bool {
		raw, _ = os.ReadFile(logPath)
		return bytes.Count(raw, []byte("\n")) >= 1
	})
	lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1:\n%s", len(lines), raw)
	}
	line := lines[0]
	for _, b := range line {
		if b < 0x20 || b == 0x7f {
			t.Errorf("raw control byte %#x in the line: %q", b, line)
		}
	}
	if bytes.Contains(line, []byte("\xc2\x9b")) || bytes.Contains(line, []byte("\xe2\x80\xa8")) || bytes.Contains(line, []byte("\xe2\x80\xa9")) {
		t.Errorf("C1 or line separator left raw: %q", line)
	}
	var e map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, line)
	}
	fields := []string{"time", "remote_addr", "method", "host", "path", "status", "bytes_in", "bytes_out", "duration",
		"upstream_addr", "upstream_duration", "attempts", "upstream_error", "route", "pool", "request_id"}
	if len(e) != len(fields) {
		t.Errorf("%d fields, want %d: %s", len(e), len(fields), line)
	}
	for _, f := range fields {
		if _, ok := e[f]; !ok {
			t.Errorf("field %s missing: %s", f, line)
		}
	}
	if ts, _ := e["time"].(string); len(ts) != len("2006-01-02T15:04:05.000Z") || !strings.HasSuffix(ts, "Z") {
		t.Errorf("time = %q, want RFC 3339 UTC with milliseconds", ts)
	} else if _, err := time.Parse(time.RFC3339, ts); err != nil {
		t.Errorf("time = %q: %v", ts, err)
	}
	if ra, _ := e["remote_addr"].(string); ra != c.LocalAddr().String() {
		t.Errorf("remote_addr = %q, want %q", ra, c.LocalAddr())
	}
	wantStr := map[string]string{
		"method":         "POST",
		"host":           "API.example.com",
		"path":           "/v1/a\nb\"c\x1b\u2028\u009b\ufffd",
		"upstream_addr":  up.addr,
		"upstream_error": "",
		"route":          "api.example.com/v1/",
		"pool":           "p",
		"request_id":     "id\"\\\u2029\u009b\ufffd\tz",
	}
	for k, want := range wantStr {
		if got, _ := e[k].(string); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	wantNum := map[string]string{"status": "200", "bytes_in": "11", "bytes_out": fmt.Sprint(len(respBody)), "attempts": "1"}
	for k, want := range wantNum {
		if got := fmt.Sprint(e[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	if d, ud := fmt.Sprint(e["duration"]), fmt.Sprint(e["upstream_duration"]); d != ud || len(d) < 8 || d[len(d)-7] != '.' {
		t.Errorf("duration %s, upstream_duration %s: want equal (one attempt), seconds with 6 decimals", d, ud)
	}
}
