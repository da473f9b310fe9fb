package discovery

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/config"
)

// TestRefusedLookupsLogOnce: a resolver whose port is closed refuses every
// query; the repeats are the same failure, logged at warn level once and
// then at debug level, though each error names another local port.
func TestRefusedLookupsLogOnce(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close()

	var logs bytes.Buffer
	w := NewWatcher("api", config.DNSDiscovery{Name: "api.test", Port: 80, Resolver: closed, Interval: time.Second},
		WatcherOptions{Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	const n = 3
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := w.Resolve(ctx)
		cancel()
		if err == nil {
			t.Fatal("a lookup against a closed port succeeded")
		}
		w.fail(err)
	}
	if warns := strings.Count(logs.String(), `"level":"warn"`); warns != 1 {
		t.Errorf("%d warn lines for %d identical failures, want 1:\n%s", warns, n, logs.String())
	}
	if debugs := strings.Count(logs.String(), `"level":"debug"`); debugs != n-1 {
		t.Errorf("%d debug lines, want %d:\n%s", debugs, n-1, logs.String())
	}
}

// TestSameFailureKey: port numbers do not tell failures apart; anything
// else does.
func TestSameFailureKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"lookup api.test on 127.0.0.1:53: read udp 127.0.0.1:55277->127.0.0.1:53: read: connection refused",
			"lookup api.test on 127.0.0.1:53: read udp 127.0.0.1:40001->127.0.0.1:53: read: connection refused", true},
		{"lookup api.test on 127.0.0.1:53: no such host", "lookup api.test on 127.0.0.1:53: i/o timeout", false},
		{"lookup api.test on 10.0.0.1:53: no such host", "lookup api.test on 10.0.0.2:53: no such host", false},
	}
	for _, tt := range tests {
		if got := sameFailureKey(errString(tt.a)) == sameFailureKey(errString(tt.b)); got != tt.same {
			t.Errorf("same(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }
