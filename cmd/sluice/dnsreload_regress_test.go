package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestReloadChangedDNSPoolFailedLookup: a reload that changes a DNS
// pool's name to one that does not resolve starts the pool empty, as the
// README says, rather than keep the old name's backends.
func TestReloadChangedDNSPoolFailedLookup(t *testing.T) {
	old := startElasticBackend(t, "127.0.0.1:0")
	p := portOf(t, old.addr)
	d := startSlowDNS(t, 0)
	listen, admin := freePort(t), freePort(t)
	render := func(name string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nwatch_config: false\nroutes: [{pool: api}]\npools:\n  api:\n    discovery: {dns: {name: %s, port: %d, type: A, interval: 1s, resolver: %s}}\n",
			listen, admin, name, p, d.addr)
	}
	path := writeConfig(t, render("api.test"))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	replaceFile(t, path, render("gone.test")) // answers "no such host"
	resp, err := http.Post("http://"+admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload = %d", resp.StatusCode)
	}
	time.Sleep(2500 * time.Millisecond) // two failed lookups of the new name
	before := old.hits.Load()
	r, err := http.Get("http://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if pools := getBody(t, "http://"+admin+"/admin/pools"); strings.Contains(pools, old.addr) || r.StatusCode == 200 {
		t.Errorf("after a reload to a name that does not resolve: GET / = %d (%d hits on the old name's backend), /admin/pools:\n%s\nwant the pool empty (503), as the README says",
			r.StatusCode, old.hits.Load()-before, pools)
	}
}
