package health

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestParseStatusLine(t *testing.T) {
	tests := []struct {
		give     string
		wantCode int
		wantOK   bool
	}{
		{give: "HTTP/1.1 200 OK\r\n", wantCode: 200, wantOK: true},
		{give: "HTTP/1.0 503 Service Unavailable\r\n", wantCode: 503, wantOK: true},
		{give: "HTTP/1.1 204\r\n", wantCode: 204, wantOK: true},
		{give: "HTTP/1.1 204\n", wantCode: 204, wantOK: true},
		{give: "HTTP/1.1 404 ", wantCode: 404, wantOK: true},
		{give: "HTTP/1.1 200", wantCode: 200, wantOK: true},
		{give: "HTTP/2 200 OK\r\n"},
		{give: "HTTP/1.1 20 OK\r\n"},
		{give: "HTTP/1.1 2000 OK\r\n"},
		{give: "HTTP/1.1 abc OK\r\n"},
		{give: "HTTP/1.1  200 OK\r\n"},
		{give: "HTTP/1.1 099 OK\r\n"},
		{give: "HTTP/1.x 200 OK\r\n"},
		{give: "SSH-2.0-OpenSSH\r\n"},
		{give: ""},
		{give: "HTTP/1."},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.give), func(t *testing.T) {
			code, ok := parseStatusLine([]byte(tt.give))
			if code != tt.wantCode || ok != tt.wantOK {
				t.Errorf("parseStatusLine(%q) = %d, %v, want %d, %v", tt.give, code, ok, tt.wantCode, tt.wantOK)
			}
		})
	}
}

func FuzzParseStatusLine(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 200 OK\r\n", "HTTP/1.0 503\n", "HTTP/1.1 2", "garbage"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		code, ok := parseStatusLine(line)
		if ok && (code < 100 || code > 999) {
			t.Errorf("parseStatusLine(%q) = %d, true: out of range", line, code)
		}
		if !ok && code != 0 {
			t.Errorf("parseStatusLine(%q) = %d, false: want 0", line, code)
		}
	})
}

func TestConnectReason(t *testing.T) {
	tests := []struct {
		name string
		give error
		want string
	}{
		{
			name: "refused",
			give: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
			want: "connect: connection refused",
		},
		{name: "timeout", give: &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, want: "connect: timeout"},
		{name: "dns", give: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x"}}, want: "connect: no such host"},
		{name: "other", give: errors.New("boom"), want: "connect: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := connectReason(tt.give); got != tt.want {
				t.Errorf("connectReason(%v) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}
