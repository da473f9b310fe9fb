package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/config"
	"sluice/netconn"
)

// r23ProxyOn serves yamlText on a listener at listen (an address with
// port 0), as startProxy does on 127.0.0.1, and returns its address.
func r23ProxyOn(t *testing.T, yamlText, listen string) string {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", listen)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", listen, err)
	}
	p := New()
	ctrl := NewController(p, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	if err := ctrl.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	nl := netconn.NewListener(tcp)
	ClientTimeouts(nl, cfg)
	srv := NewFrontServer(p, cfg, zerolog.Nop())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(nl) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.ShutdownWithContext(sctx)
		_ = nl.Close()
		<-served
		cancel()
		<-done
	})
	return nl.Addr().String()
}

// TestForwardedForIPv6Peer: the client address sluice appends to
// X-Forwarded-For is the peer's plain textual form, as nginx's
// $proxy_add_x_forwarded_for writes it: "::1" for a client on ::1 (no
// brackets, no port), and "127.0.0.1", not "::ffff:127.0.0.1", for an
// IPv4 client of a dual-stack listener; the client's IPv6 entries go on
// as sent. (Coverage: checked and right.)
func TestForwardedForIPv6Peer(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	y := "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: " + b.ln.Addr().String() + " }\n"
	for _, tc := range []struct{ listen, dialHost, want string }{
		{"[::1]:0", "::1", "2001:db8::1, ::1"},
		{"[::]:0", "::1", "2001:db8::1, ::1"},
		{"[::]:0", "127.0.0.1", "2001:db8::1, 127.0.0.1"},
	} {
		addr := r23ProxyOn(t, y, tc.listen)
		_, port, _ := net.SplitHostPort(addr)
		out := rawWire(t, net.JoinHostPort(tc.dialHost, port),
			"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 2001:db8::1\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200") {
			t.Fatalf("%s via %s: proxy answered %.60q", tc.listen, tc.dialHost, out)
		}
		if got := upstreamHead(b.got()); !strings.Contains(got, "\r\nX-Forwarded-For: "+tc.want+"\r\n") {
			t.Errorf("%s via %s: backend got\n%q\nwant X-Forwarded-For: %s", tc.listen, tc.dialHost, got, tc.want)
		}
	}
}
