package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: README (Access log, request_id): "Empty when sluice answered
// itself (404, 503, a 502 after every attempt failed…) and the client
// sent none", and request_id is "the X-Request-Id that sluice forwarded".
// A request whose every attempt was refused at connect (nothing was ever
// forwarded) and that sluice answered 502 itself is logged with a fresh
// random request_id instead: prepareRequest (proxy/handler.go:992-998)
// generates the id into the request before the first attempt, and
// logAccess (proxy/handler.go:827) logs whatever X-Request-Id the request
// holds, whatever the outcome. An operator who greps the backends' logs
// for that id finds nothing, and it looks like a forwarded request.
// Fix: remember in outcome whether the id was generated and whether any
// attempt wrote the request upstream, and log a generated id only then
// (or change README to say a 502/504 logs the id sluice generated).
func TestAccessLogRequestIDEmptyWhenNothingForwarded(t *testing.T) {
	dead := freePort(t) // nothing listens: every attempt is refused
	logPath := filepath.Join(t.TempDir(), "access.log")
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\n"+
		"access_log: {enabled: true, path: %s}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
		listen, admin, logPath, dead))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	resp, err := http.Get("http://" + listen + "/refused")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Fatalf("GET /refused = %d, want 502 (the premise: every attempt refused)", resp.StatusCode)
	}
	var line map[string]any
	waitUntil(t, "the access log line", 3*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `"/refused"`) {
				return json.Unmarshal([]byte(l), &line) == nil
			}
		}
		return false
	})
	if line["upstream_error"] != "connect" || line["attempts"] == float64(0) {
		t.Fatalf("line = %v, want a connect failure after attempts (the premise)", line)
	}
	if id := line["request_id"]; id != "" {
		t.Errorf("request_id = %q for a 502 sluice answered itself, no request having reached a backend and the client having sent none; README: empty", id)
	}
}
