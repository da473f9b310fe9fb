package main

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// r18ReloadSeries is the set of metric series names+labels in /metrics
// (comment lines left out), without the values.
func r18ReloadSeries(t *testing.T, admin string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(getBody(t, "http://"+admin+"/metrics"), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			l = l[:i]
		}
		if strings.HasPrefix(l, "go_") || strings.HasPrefix(l, "process_") {
			continue
		}
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// TestSeriesDoNotGrowAcrossReloads: 11 reloads, each adding a
// route and a sticky pool of a new name (and dropping the last ones), a
// host route, a pool whose health-checked and outlier-detected backend
// changes, and new upstream timeouts (a new client per backend), with
// traffic through each. Back at the shape it started from, once the
// drains are over, /metrics lists the same series as then (passes).
func TestSeriesDoNotGrowAcrossReloads(t *testing.T) {
	ups := []*elasticBackend{startElasticBackend(t, "127.0.0.1:0"), startElasticBackend(t, "127.0.0.1:0")}
	listen, admin := freePort(t), freePort(t)
	render := func(i int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\ndrain_timeout: 500ms\n", listen, admin)
		fmt.Fprintf(&b, "timeouts: {response: %dms}\n", 5000+i)
		fmt.Fprintf(&b, "routes:\n  - {pool: web}\n  - {match: {path_prefix: /v%d/}, pool: p%d}\n  - {match: {host: h%d.test}, pool: web}\n", i, i, i)
		fmt.Fprintf(&b, "pools:\n  web:\n    health_check: {type: http, path: /h, interval: 100ms}\n    outlier_detection: {consecutive_failures: 3}\n    backends: [{address: %s}]\n", ups[i%2].addr)
		fmt.Fprintf(&b, "  p%d:\n    sticky: {cookie: s%d}\n    backends: [{address: %s}, {address: %s}]\n", i, i, ups[0].addr, ups[1].addr)
		return b.String()
	}
	traffic := func(i int) {
		for _, u := range []string{"/", fmt.Sprintf("/v%d/x", i), "/nothing"} {
			req, _ := http.NewRequest("GET", "http://"+listen+u, nil)
			req.Host = fmt.Sprintf("h%d.test", i)
			if u == "/" {
				req.Host = "x"
			}
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	path := writeConfig(t, render(0))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	traffic(0)
	for i := 1; i <= 2; i++ {
		replaceFile(t, path, render(i))
		if code, body := adminReload(t, admin); code != 200 {
			t.Fatal(body)
		}
		traffic(i)
	}
	time.Sleep(1500 * time.Millisecond)
	base := r18ReloadSeries(t, admin)
	for i := 3; i <= 12; i++ {
		replaceFile(t, path, render(i))
		if code, body := adminReload(t, admin); code != 200 {
			t.Fatal(body)
		}
		traffic(i)
	}
	// Back to shape 2 (same parity), whose series base shows.
	replaceFile(t, path, render(2))
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatal(body)
	}
	traffic(2)
	have := map[string]bool{}
	for _, s := range base {
		have[s] = true
	}
	var after, extra []string
	// The drains (drain_timeout 500ms) end on the controller's next
	// ticks: taken again for up to 5 s until no series is left over.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		after, extra = r18ReloadSeries(t, admin), nil
		for _, s := range after {
			if !have[s] {
				extra = append(extra, s)
			}
		}
		if len(extra) == 0 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%d series before, %d after", len(base), len(after))
	if len(extra) > 0 {
		t.Errorf("series left by 11 reloads:\n%s", strings.Join(extra, "\n"))
	}
}
