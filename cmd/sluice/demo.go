package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"

	"sluice/config"
)

//go:embed demo.yaml
var demoConfig string

// runDemo starts three demo upstreams on loopback and serves the embedded
// demo config in front of them: a working proxy with nothing to install.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "proxy listen address")
	admin := fs.String("admin", "127.0.0.1:9901", "admin listen address")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // as sluice -h
		}
		return 2
	}
	if fs.NArg() > 0 {
		// Without this, "sluice demo 127.0.0.1:9090 -admin ..." served
		// on the defaults, the rest ignored (found by review).
		fmt.Fprintf(stderr, "sluice demo: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	var wg sync.WaitGroup
	var servers []*fasthttp.Server
	var lns []net.Listener
	defer func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
		// A Serve that had not taken its listener when Shutdown came (an
		// early return, a bad config) would wait in Accept for good, and
		// the demo with it (found by review).
		for _, ln := range lns {
			_ = ln.Close()
		}
		wg.Wait()
	}()
	vars := map[string]string{"${LISTEN}": *listen, "${ADMIN}": *admin}
	for i := 1; i <= 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(stderr, "demo:", err)
			return 1
		}
		name := fmt.Sprintf("demo-%d", i)
		s := &fasthttp.Server{Handler: demoUpstream(name, ln.Addr().String()), NoDefaultServerHeader: true}
		servers, lns = append(servers, s), append(lns, ln)
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Serve(ln) }()
		vars[fmt.Sprintf("${UP%d}", i)] = ln.Addr().String()
	}
	text := demoConfig
	for k, v := range vars {
		// Quoted: pasted as they are, "[::1]:8080" read as a YAML list
		// and "" as no value, which kept the default admin listener
		// (found by review). Go's escapes are YAML's in double quotes.
		text = strings.ReplaceAll(text, k, strconv.Quote(v))
	}
	cfg, err := config.Parse("demo.yaml (embedded)", []byte(text))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	banner := func() {
		fmt.Fprintf(stdout, `sluice demo: proxy on http://%[1]s over 3 demo upstreams (%[2]s, %[3]s, %[4]s)
try:
  curl -s http://%[1]s/              # round robin over demo-1..3
  curl -s http://%[1]s/api/hello     # weighted 3:1 over demo-1 and demo-2
`, reachable(*listen), vars["${UP1}"], vars["${UP2}"], vars["${UP3}"])
		if *admin != "" { // -admin "" turns the admin API off, as admin.listen: ""
			fmt.Fprintf(stdout, "  curl -s http://%s/admin/pools   # admin API: pools, backends, health\n", reachable(*admin))
		}
		fmt.Fprintln(stdout, "Ctrl-C stops everything.")
	}
	code := serve(ctx, cfg, options{stderr: stderr, worker: -1, serving: banner})
	if code != 0 && ctx.Err() == nil {
		fmt.Fprintln(stderr, "sluice demo: -listen ADDR and -admin ADDR choose other addresses")
	}
	return code
}

// demoUpstream answers every request with who it is and what it received.
func demoUpstream(name, addr string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/healthz" {
			ctx.SetBodyString("ok\n")
			return
		}
		ctx.Response.Header.Set("X-Backend", name)
		ctx.SetContentType("text/plain; charset=utf-8")
		fmt.Fprintf(ctx, "hello from %s (%s)\n%s %s\nhost: %s\nx-forwarded-for: %s\nx-request-id: %s\n",
			name, addr, ctx.Method(), ctx.RequestURI(), ctx.Host(),
			ctx.Request.Header.Peek("X-Forwarded-For"), ctx.Request.Header.Peek("X-Request-Id"))
	}
}

// reachable is listen address addr as a client on this host dials it:
// an address on every interface (":8080", "0.0.0.0:8080", "[::]:8080")
// on loopback. curl refuses "http://:8080/" (found by review: the demo's
// banner printed it for -listen :8080).
func reachable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
