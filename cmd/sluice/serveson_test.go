package main

import (
	"context"
	"fmt"
	"net"
	"testing"
)

// review16bFakeListener is a listener that only reports an address: what
// servesOn looks at. It binds nothing.
type review16bFakeListener struct{ addr *net.TCPAddr }

func (l review16bFakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (l review16bFakeListener) Close() error              { return nil }
func (l review16bFakeListener) Addr() net.Addr            { return l.addr }

// TestServesOnWildcardSpellings: Go binds "0.0.0.0:P", ":P"
// and "[::]:P" alike, as one dual-stack socket that reports "[::]:P"
// (net.Listen("tcp", "0.0.0.0:0").Addr() is "[::]:N" on Linux), so a
// reload that changes listen between these spellings re-spells the same
// socket, exactly the case servesOn was added for. servesOn says false for
// two of them ("" is refused outright, and 0.0.0.0 != ::), so stage opens a
// second listener on the port the running one holds: "bind: address
// already in use" (without listen_reuseport), and the whole reload,
// with every other change in the edit, is rejected.
func TestServesOnWildcardSpellings(t *testing.T) {
	const port = 18080 // nothing is bound: the listener is fake
	running := &server{ln: review16bFakeListener{&net.TCPAddr{IP: net.IPv6unspecified, Port: port}}}
	for _, spelled := range []string{
		fmt.Sprintf("0.0.0.0:%d", port),
		fmt.Sprintf(":%d", port),
		fmt.Sprintf("[::]:%d", port),
	} {
		// Found by review, fixed: expected true for all three (the same socket as the
		// running [::]:P listener); it was false for "0.0.0.0:P" and ":P".
		if !servesOn(context.Background(), running, spelled) {
			t.Errorf("servesOn(listener bound at [::]:%d, %q) = false, want true: Go binds %q as that same dual-stack socket, so a reload to this spelling fails with address already in use", port, spelled, spelled)
		}
	}
	// Not the same socket: another port, or one specific address.
	for _, other := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("0.0.0.0:%d", port+1)} {
		if servesOn(context.Background(), running, other) {
			t.Errorf("servesOn(listener bound at [::]:%d, %q) = true, want false", port, other)
		}
	}
}
