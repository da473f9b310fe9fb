package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadyzFalseWhenFrontListenerFails: a proxy listener that stops on
// an error of its own (here shut down under the server, so that accept
// fails with EINVAL) turns /readyz to 503, so that a load balancer or
// Kubernetes stops sending to a process that accepts nothing. (Found by
// review: fasthttp's Serve returned, the error was logged, and /readyz
// stayed 200.)
func TestReadyzFalseWhenFrontListenerFails(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nwatch_config: false\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
		listen, admin, up.addr))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	fd := listeningFD(t, listen)
	if err := syscall.Shutdown(fd, syscall.SHUT_RD); err != nil {
		t.Fatalf("shutdown(listener): %v", err)
	}
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := c.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %v %v after the proxy listener failed, want 503", resp.StatusCode, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listeningFD finds this process's listening socket bound to addr.
func listeningFD(t *testing.T, addr string) int {
	t.Helper()
	want, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	links, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if to, err := os.Readlink(l); err != nil || !strings.HasPrefix(to, "socket:") {
			continue
		}
		var fd int
		if _, err := fmt.Sscan(filepath.Base(l), &fd); err != nil {
			continue
		}
		if on, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || on == 0 {
			continue
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			continue
		}
		if in, ok := sa.(*syscall.SockaddrInet4); ok && in.Port == want.Port && net.IP(in.Addr[:]).Equal(want.IP) {
			return fd
		}
	}
	t.Fatalf("no listening socket on %s", addr)
	return -1
}
