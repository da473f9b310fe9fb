package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// r23Backend echoes, as JSON, its name, the Host it got and the
// forwarding fields; /slow/ answers after 1.5 s and /big/ with 200 KB.
func r23Backend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch {
		case strings.HasPrefix(r.URL.Path, "/slow/"):
			time.Sleep(1500 * time.Millisecond)
		case strings.HasPrefix(r.URL.Path, "/big/"):
			w.Write(make([]byte, 200<<10))
			return
		}
		json.NewEncoder(w).Encode(map[string]string{
			"name": name, "host": r.Host, "xff": r.Header.Get("X-Forwarded-For"),
			"xfp": r.Header.Get("X-Forwarded-Proto"), "xfh": r.Header.Get("X-Forwarded-Host"), "rid": r.Header.Get("X-Request-Id"),
		})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// r23Get sends a GET with the fields in hdr ("Host" sets the Host)
// and returns the status and the backend's JSON echo (nil if none).
func r23Get(url string, hdr map[string]string) (int, map[string]string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]string
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, nil
}

// TestReloadEachFieldAtOnceUnderLoad: reloads through POST
// /admin/reload that each change one field README says a reload applies
// at once (routes by host, wildcard and prefix, preserve_host top-level
// and per pool, forwarding.*, timeouts.response, limits.max_response_bytes),
// under keep-alive clients sending POSTs back to back. Each change shows
// in the next request; a request in flight keeps the response timeout it
// began with; a route naming a pool the file no longer has is refused at
// its file, line and field; not one POST goes unanswered.
// (passes: a regression test)
func TestReloadEachFieldAtOnceUnderLoad(t *testing.T) {
	a, b := r23Backend(t, "a"), r23Backend(t, "b")
	listen, admin := freePort(t), freePort(t)
	base := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\n", listen, admin)
	pools := fmt.Sprintf("pools:\n  pa: {backends: [{address: %s}]}\n  pb: {backends: [{address: %s}]}\n", a, b)
	path := writeConfig(t, base+"routes: [{pool: pa}]\n"+pools)
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	clients := &busyClients{}
	clients.addr.Store(&listen)
	ctx, stop := context.WithCancel(context.Background())
	wait := clients.run(ctx, 4)
	defer func() { stop(); wait() }()
	waitUntil(t, "load flowing", 5*time.Second, func() bool { return clients.answered.Load() > 50 })

	reload := func(text string) {
		t.Helper()
		replaceFile(t, path, text)
		if code, body := adminReload(t, admin); code != 200 {
			t.Fatalf("reload = %d %s", code, body)
		}
	}
	u := "http://" + listen
	check := func(what, path string, hdr map[string]string, ok func(int, map[string]string) bool) {
		t.Helper()
		code, m, err := r23Get(u+path, hdr)
		if err != nil || !ok(code, m) {
			t.Errorf("%s: %d %v %v", what, code, m, err)
		}
	}
	name := func(want string) func(int, map[string]string) bool {
		return func(code int, m map[string]string) bool { return code == 200 && m["name"] == want }
	}
	h := map[string]string{"Host": "h.test"}

	reload(base + "routes: [{pool: pa}, {match: {host: h.test}, pool: pb}]\n" + pools)
	check("exact host route, Host in capitals with a port", "/x/", map[string]string{"Host": "H.TEST:80"}, name("b"))
	reload(base + "routes: [{pool: pa}, {match: {host: \"*.test\"}, pool: pb}, {match: {host: h.test, path_prefix: /y/}, pool: pa}]\n" + pools)
	check("exact host group without a matching prefix falls to the wildcard", "/x/", h, name("b"))
	check("exact host with its prefix", "/y/", h, name("a"))
	reload(base + "routes: [{match: {path_prefix: /y/}, pool: pb}, {match: {path_prefix: /}, pool: pa}]\n" + pools)
	check("longest prefix", "/y/z", nil, name("b"))
	reload(base + "routes: [{match: {path_prefix: /post}, pool: pa}]\n" + pools)
	check("no route", "/y/z", nil, func(code int, _ map[string]string) bool { return code == 404 })

	reload(base + "preserve_host: false\nroutes: [{pool: pa}]\n" + pools)
	check("preserve_host false", "/", h, func(code int, m map[string]string) bool { return m["host"] == a })
	reload(base + "preserve_host: false\nroutes: [{pool: pa}]\npools:\n  pa: {preserve_host: true, backends: [{address: " + a + "}]}\n")
	check("pool preserve_host true", "/", h, func(code int, m map[string]string) bool { return m["host"] == "h.test" })

	in := map[string]string{"Host": "h.test", "X-Forwarded-For": "192.0.2.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "o.test"}
	reload(base + "forwarding: {x_forwarded_for: replace, x_forwarded_proto: false, x_forwarded_host: false, request_id: false}\nroutes: [{pool: pa}]\n" + pools)
	check("forwarding off and replace", "/", in, func(code int, m map[string]string) bool {
		return m["xff"] == "127.0.0.1" && m["xfp"] == "https" && m["xfh"] == "o.test" && m["rid"] == ""
	})
	reload(base + "forwarding: {x_forwarded_for: pass}\nroutes: [{pool: pa}]\n" + pools)
	check("forwarding on and pass", "/", in, func(code int, m map[string]string) bool {
		return m["xff"] == "192.0.2.9" && m["xfp"] == "http" && m["xfh"] == "h.test" && m["rid"] != ""
	})

	// A request in flight keeps the response timeout it began with; the
	// next one has the new one, and the new response limit.
	slow := make(chan int, 1)
	go func() {
		code, _, _ := r23Get(u+"/slow/1", nil)
		slow <- code
	}()
	time.Sleep(300 * time.Millisecond)
	reload(base + "timeouts: {response: 500ms}\nlimits: {max_response_bytes: 100000}\nroutes: [{pool: pa}]\n" + pools)
	check("new timeouts.response", "/slow/2", nil, func(code int, _ map[string]string) bool { return code == 504 })
	check("new max_response_bytes", "/big/", nil, func(code int, _ map[string]string) bool { return code == 502 })
	if code := <-slow; code != 200 {
		t.Errorf("request in flight across a reload to timeouts.response 500ms: %d, want 200 (it keeps the 30s it began with)", code)
	}

	// A pool renamed while a route still names it: refused, placed, kept.
	replaceFile(t, path, base+"routes: [{pool: pa}]\npools:\n  pz: {backends: [{address: "+a+"}]}\n")
	if code, body := adminReload(t, admin); code != 400 || !strings.Contains(body, path+":5: routes[0].pool: unknown pool") {
		t.Errorf("reload naming a removed pool = %d %s, want 400 at %s:5 routes[0].pool", code, body, path)
	}
	check("running config kept", "/", nil, name("a"))

	time.Sleep(200 * time.Millisecond)
	stop()
	wait()
	if n := clients.lost.Load(); n > 0 {
		t.Errorf("%d POSTs got no answer across the reloads, e.g.\n%s", n, strings.Join(clients.losses, "\n"))
	}
}

// TestReloadClientSettingsNewListenerOnly: README (Hot reload)
// says timeouts.client_* and limits.max_header_bytes/max_body_bytes apply
// to new listeners only. A reload that lowers them on the running
// listener leaves a slow request with a large head served there as
// before; once listen moves, the new listener applies them.
// (passes: a regression test)
func TestReloadClientSettingsNewListenerOnly(t *testing.T) {
	a := r23Backend(t, "a")
	listen, listen2, admin := freePort(t), freePort(t), freePort(t)
	render := func(listen string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\n"+
			"timeouts: {client_read: 300ms}\nlimits: {max_header_bytes: 1024, max_body_bytes: 10}\nroutes: [{pool: pa}]\npools:\n  pa: {backends: [{address: %s}]}\n", listen, admin, a)
	}
	start := strings.Replace(render(listen), "timeouts: {client_read: 300ms}\nlimits: {max_header_bytes: 1024, max_body_bytes: 10}\n", "", 1)
	path := writeConfig(t, start)
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	// A head of 2 KB sent in two parts 700 ms apart, and a 20-byte body.
	slowReq := func(addr string) (int, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2000)+"\r\n")
		time.Sleep(700 * time.Millisecond)
		io.WriteString(c, "Content-Length: 20\r\n\r\n01234567890123456789")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	replaceFile(t, path, render(listen))
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatalf("reload = %d %s", code, body)
	}
	if code, err := slowReq(listen); code != 200 {
		t.Errorf("running listener after a reload of client settings: %d %v, want 200 (they apply to new listeners only)", code, err)
	}
	replaceFile(t, path, render(listen2))
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatalf("reload = %d %s", code, body)
	}
	if code, err := slowReq(listen2); code != 431 && code != 408 && code != 413 {
		t.Errorf("moved listener: %d %v, want the new limits (431, 408 or 413)", code, err)
	}
}
