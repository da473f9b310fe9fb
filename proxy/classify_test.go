package proxy

import (
	"bytes"
	"testing"
)

// classifyByScan is classifyHeader's name lookup done the plain way: every
// known name compared in any case.
func classifyByScan(name []byte) (headerSet, bool) {
	for _, k := range knownHeaders {
		if bytes.EqualFold(k.name, name) {
			return k.bit, true
		}
	}
	// A forwarding header's name with underscores for hyphens.
	if dashed := bytes.ReplaceAll(name, []byte("_"), []byte("-")); !bytes.Equal(dashed, name) {
		for _, k := range knownHeaders {
			if k.bit&forwardedBits != 0 && bytes.EqualFold(k.name, dashed) {
				return hForwardedAlias, true
			}
		}
	}
	return 0, false
}

// FuzzClassifyHeader: classifyHeader, which looks only at the known names
// of a name's length and folds case by one bit, finds the header
// a comparison with every known name finds.
func FuzzClassifyHeader(f *testing.F) {
	for _, k := range knownHeaders {
		f.Add(k.name, []byte("x"))
		f.Add(bytes.ToLower(k.name), []byte("close"))
	}
	f.Add([]byte("X-Forwarded-Fo~"), []byte(""))
	f.Add([]byte("Content_Length"), []byte("1"))
	f.Add([]byte("X_Forwarded_For"), []byte("6.6.6.6"))
	f.Add([]byte("x-forwarded_host"), []byte("evil"))
	f.Add([]byte("Connection"), []byte("keep-alive, X-Secret"))
	f.Fuzz(func(t *testing.T, name, value []byte) {
		got := classifyHeader(name, value)
		if !isToken(name) {
			if got != hBadName {
				t.Fatalf("classifyHeader(%q) = %b for a name that is no token", name, got)
			}
			return
		}
		bit, known := classifyByScan(name)
		if !known && got != 0 || known && got&bit == 0 {
			t.Fatalf("classifyHeader(%q, %q) = %b, a scan of the known names finds %b (known %v)", name, value, got, bit, known)
		}
	})
}

// TestKnownHeaderNames: classifyHeader's lookup holds only for known names
// of letters and dashes (tokenIs) shorter than its table.
func TestKnownHeaderNames(t *testing.T) {
	for _, k := range knownHeaders {
		if len(k.name) >= len(knownByLength) {
			t.Errorf("%s is too long for knownByLength", k.name)
		}
		for _, c := range k.name {
			if !('a' <= c|0x20 && c|0x20 <= 'z') && c != '-' {
				t.Errorf("%s has %q, which tokenIs cannot fold", k.name, c)
			}
		}
	}
}

// BenchmarkScanRequest: the header scan of a browser's request (a dozen
// fields, none of them ones the proxy rewrites).
func BenchmarkScanRequest(b *testing.B) {
	raw := []byte("Host: shop.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n" +
		"Accept-Encoding: gzip, deflate, br, zstd\r\nReferer: https://shop.example/\r\nCookie: session=abc123; theme=dark\r\n" +
		"Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\n" +
		"Priority: u=0, i\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if scanRequest(raw) != 0 {
			b.Fatal("found a header the proxy rewrites")
		}
	}
}
