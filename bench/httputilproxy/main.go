// Command httputilproxy is the "Go httputil" baseline of the side-by-side
// benchmark (bench/run.sh): the standard library's httputil.ReverseProxy,
// round robin over a fixed list of upstreams, keep-alive to the upstreams.
// It is deliberately minimal; it is a yardstick, not a product.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	upstreams := flag.String("upstreams", "127.0.0.1:8081,127.0.0.1:8082", "comma-separated upstream host:port list")
	idle := flag.Int("idle-per-host", 128, "idle keep-alive connections kept per upstream")
	flag.Parse()

	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}

	var targets []*url.URL
	for _, a := range strings.Split(*upstreams, ",") {
		u, err := url.Parse("http://" + strings.TrimSpace(a))
		if err != nil {
			log.Fatalf("bad upstream %q: %v", a, err)
		}
		targets = append(targets, u)
	}
	if len(targets) == 0 {
		log.Fatal("no upstreams")
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0 // no global cap
	tr.MaxIdleConnsPerHost = *idle
	tr.IdleConnTimeout = 90 * time.Second

	var next atomic.Uint64
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := targets[(next.Add(1)-1)%uint64(len(targets))]
			pr.SetURL(t)
			pr.Out.Host = pr.In.Host
		},
		Transport: tr,
		ErrorLog:  log.New(os.Stderr, "httputilproxy: ", 0),
	}

	srv := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "httputilproxy:", err)
		os.Exit(1)
	}
}
