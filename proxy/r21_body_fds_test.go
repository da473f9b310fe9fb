package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// openFdsR21 counts the process's open descriptors.
func openFdsR21(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// TestBodyFdsSettle: many answers of every kind a body can take
// (lent, spliced through small and big pipes, read whole past 1 MiB,
// chunked, close-delimited, cut short, longer than announced, to HEAD),
// to clients that read them, close in the middle, or reset, leave the
// process with no more descriptors than it began with once the
// connections are gone and the collector ran (passing: pipes, upstream
// and client connections are all given back).
func TestBodyFdsSettle(t *testing.T) {
	addr := bodiesBackendLong(t, func(c net.Conn, req *fasthttp.Request) bool {
		// /<kind>/<n>
		parts := strings.Split(string(req.URI().Path()), "/")
		n, _ := strconv.Atoi(parts[2])
		body := patterned(n)
		switch parts[1] {
		case "length":
			return r21Answer(c, "length", "apart", body)
		case "chunked":
			return r21Answer(c, "chunked", "one", body)
		case "close":
			r21Answer(c, "close11", "one", body)
			return false
		case "cut":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n+10)
			c.Write(body)
			return false
		case "more":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
			c.Write(body)
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"))
			return true
		}
		return false
	})
	px := bodiesProxy(t, addr, "timeouts: { response: 5s }\n")
	kinds := []string{"length", "chunked", "close", "cut", "more"}
	sizes := []int{100, 20 << 10, 64 << 10, 200 << 10, 1 << 20, 2 << 20}
	run := func() {
		for i := range 3 {
			for _, kind := range kinds {
				for _, n := range sizes {
					c, err := net.Dial("tcp", px.addr)
					if err != nil {
						t.Fatal(err)
					}
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					method := "GET"
					if n == 100 {
						method = "HEAD"
					}
					fmt.Fprintf(c, "%s /%s/%d HTTP/1.1\r\nHost: x\r\n\r\n", method, kind, n)
					switch i {
					case 0: // read the answer whole, then close
						req, _ := http.NewRequest(method, "http://x/", nil)
						if resp, err := http.ReadResponse(bufio.NewReader(c), req); err == nil {
							_, _ = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
					case 1: // read a little, then close
						var b [512]byte
						_, _ = c.Read(b[:])
					case 2: // go at once, with a reset
						_ = c.(*net.TCPConn).SetLinger(0)
					}
					c.Close()
				}
			}
		}
	}
	run() // warm: pools, the runtime's own descriptors
	time.Sleep(200 * time.Millisecond)
	pipesClosed(t, px)
	before := openFdsR21(t)
	run()
	deadline := time.Now().Add(8 * time.Second)
	var now int
	for {
		runtime.GC()
		now = openFdsR21(t)
		if now <= before+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("descriptors: %d after the first round, %d after the second", before, now)
	if now > before+2 { // (an idle upstream connection or two may differ)
		t.Fatalf("%d descriptors open after the second round, %d after the first (pipes open: %d small, %d big)",
			now, before, px.proxy.pipes.open.Load(), px.proxy.bigPipes.open.Load())
	}
}
