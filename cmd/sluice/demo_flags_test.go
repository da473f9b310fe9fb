package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDemoFlagsStillRead: "sluice demo -listen A -admin B"
// reaches runDemo (its flags are not taken for stray arguments), and
// "demo" after a flag is a stray argument.
func TestDemoFlagsStillRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	out := &syncBuffer{}
	// Free ports (":0" is refused by the config, and runDemo's early
	// return can race its upstreams' Serve against Shutdown).
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	listen, admin := free(), free()
	code := run(ctx, []string{"demo", "-listen", listen, "-admin", admin}, out, out)
	if !strings.Contains(out.String(), "proxy on http://"+listen) || code != 0 {
		t.Errorf("demo with flags: exit %d\n%s", code, out.String())
	}
	var b bytes.Buffer
	if code := run(context.Background(), []string{"-version", "demo"}, &b, &b); code != 2 || !strings.Contains(b.String(), `unexpected argument "demo"`) {
		t.Errorf("-version demo: exit %d\n%s", code, b.String())
	}
	b.Reset()
	if code := run(context.Background(), []string{"-version"}, &b, &b); code != 0 {
		t.Errorf("-version: exit %d\n%s", code, b.String())
	}
}
