package proxy

import (
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// failuresPerSecond bounds the upstream failure lines written per second:
// a backend that goes down under load fails thousands of requests a
// second, and one line each would make the process log the bottleneck.
// The lines left out are counted in the next line written.
const failuresPerSecond = 10

// failureLog writes upstream failures to the process log, as nginx writes
// them to its error log, at most failuresPerSecond lines a second. Only
// the failure path touches it: lock-free, so a failure storm never
// serialises requests on it.
type failureLog struct {
	log zerolog.Logger
	// second is the Unix second the count runs for; count the lines
	// allowed in it so far; skipped the failures not logged since the
	// last line.
	second  atomic.Int64
	count   atomic.Int64
	skipped atomic.Int64
}

func newFailureLog(log zerolog.Logger) *failureLog { return &failureLog{log: log} }

// allow says whether a failure at now may be logged and, if so, how many
// were left out before it.
func (f *failureLog) allow(now time.Time) (ok bool, skipped int64) {
	// Callers pass clock readings taken on their own goroutines, so one
	// from the second before may come late: the window only moves on,
	// and a late reading counts in the current second (found by review:
	// moving back and forth, each move zeroed the count).
	sec := now.Unix()
	if w := f.second.Load(); sec > w && f.second.CompareAndSwap(w, sec) {
		f.count.Store(0)
	}
	if f.count.Add(1) > failuresPerSecond {
		f.skipped.Add(1)
		return false, 0
	}
	return true, f.skipped.Swap(0)
}

// attempt logs one failed upstream attempt: which backend, why, and
// whether the request went on to another attempt (retried) or the client
// got the error.
func (f *failureLog) attempt(now time.Time, pool, backend string, attempt int, kind errKind, err error, client net.Addr, retried bool) {
	ok, skipped := f.allow(now)
	if !ok {
		return
	}
	e := f.log.Warn().Str("pool", pool).Str("backend", backend).Int("attempt", attempt).
		Str("kind", kind.String()).Bool("retried", retried)
	if err != nil {
		e = e.Str("error", err.Error())
	}
	send(e, client, skipped, "upstream attempt failed")
}

// noBackend logs a request answered 503 for want of a healthy backend.
func (f *failureLog) noBackend(now time.Time, pool string, client net.Addr) {
	ok, skipped := f.allow(now)
	if !ok {
		return
	}
	send(f.log.Warn().Str("pool", pool), client, skipped, "no usable backend")
}

// send adds the client and the count of lines left out to e and writes it.
// ejectionRefused logs an ejection max_ejection_percent refused. It
// comes once per consecutive_failures failures of a backend that keeps
// failing while others are out, so it shares the failure lines' budget
// (found by review: 299 lines for 300 requests to two failing backends).
func (f *failureLog) ejectionRefused(now time.Time, pool, backend string) {
	ok, skipped := f.allow(now)
	if !ok {
		return
	}
	send(f.log.Warn().Str("pool", pool).Str("backend", backend), nil, skipped,
		"outlier not ejected: max_ejection_percent reached")
}

func send(e *zerolog.Event, client net.Addr, skipped int64, msg string) {
	if client != nil {
		e = e.Str("client", client.String())
	}
	if skipped > 0 {
		e = e.Int64("not_logged", skipped)
	}
	e.Msg(msg)
}

// badResponseError is the text of the 502 sluice answered for a response
// it refused after reading it (badResponse), as a failure to log.
type badResponseError string

func (e badResponseError) Error() string { return strings.TrimSpace(string(e)) }
