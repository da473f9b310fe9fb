// Package balancer holds the load-balancing algorithms and the immutable
// snapshots they pick from. It knows nothing about HTTP: the data plane hands
// it a key and a clock reading, and gets back an index.
package balancer

import (
	"hash/fnv"
	"math"
	"strconv"
	"sync/atomic"
)

// Backend is one upstream instance. A Backend is shared by every snapshot
// that contains it: the control plane reuses it by identity (pool + address)
// across rebuilds, so its counters survive reloads and health changes.
type Backend struct {
	// Pool and Addr identify the backend; they never change.
	Pool string
	Addr string
	// ID is an opaque, stable name for the backend (used for sticky
	// cookies, so clients never learn internal addresses).
	ID string

	inflight atomic.Int64
	// ewmaNanos holds the peak-EWMA latency in nanoseconds as float64 bits;
	// ewmaStamp is the unix-nano time of its last update. ewmaWriting is
	// held by the one ObserveLatency updating the two (see there).
	ewmaNanos   atomic.Uint64
	ewmaStamp   atomic.Int64
	ewmaWriting atomic.Bool
}

// NewBackend returns a backend with zeroed counters.
func NewBackend(pool, addr string) *Backend {
	return &Backend{Pool: pool, Addr: addr, ID: BackendID(pool, addr)}
}

// BackendID is the opaque id of pool+addr: deterministic across processes,
// so a sticky cookie set by one sluice is understood by another.
func BackendID(pool, addr string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(pool))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(addr))
	return strconv.FormatUint(h.Sum64(), 36)
}

// Begin marks one request started on the backend.
func (b *Backend) Begin() { b.inflight.Add(1) }

// End marks one request finished on the backend.
func (b *Backend) End() { b.inflight.Add(-1) }

// InFlight is the number of requests in progress on the backend.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// EWMA returns the current peak-EWMA latency estimate in nanoseconds
// (0 when nothing has been observed yet).
func (b *Backend) EWMA() float64 { return math.Float64frombits(b.ewmaNanos.Load()) }

// ObserveLatency folds one measured upstream latency into the peak-EWMA:
// the estimate becomes the larger of the sample and the estimate as of
// now (decayed over the window since the last sample, as the picker reads
// it). A spike counts at once; a faster answer never raises the estimate,
// which decays over the window toward the answers that follow, as
// Finagle's peak EWMA does under traffic (it decays on every read).
// Weighing a sample against the stored, undecayed value, an answer faster
// than the estimate raised it (found by review: a recovering backend was
// pushed out again by its first good answer); blending it in as well
// decayed the estimate twice as fast as the window under traffic (found
// by review of that fix).
//
// One observer updates the estimate and its stamp at a time; a sample
// that comes while another is being folded in is dropped, never waited
// for (the two are answers of the same moment). With the two words
// written by concurrent observers, one could read the other's fresh
// stamp with the old estimate, and store the old estimate undecayed: a
// spike long decayed came back (TestEWMAConcurrentSamplesKeepDecay).
// Pickers read the two words without the flag: during an update they
// may see the new estimate with the old stamp, for that pick only.
func (b *Backend) ObserveLatency(now int64, rttNanos int64, windowNanos int64) {
	if !b.ewmaWriting.CompareAndSwap(false, true) {
		return
	}
	rtt := float64(rttNanos)
	if rtt < 0 {
		rtt = 0
	}
	cur := b.EWMA()
	if last := b.ewmaStamp.Load(); last != 0 {
		cur = decayed(cur, now-last, windowNanos)
	}
	b.ewmaNanos.Store(math.Float64bits(max(cur, rtt)))
	b.ewmaStamp.Store(now)
	b.ewmaWriting.Store(false)
}

// DecayedEWMA is the estimate as of now: with no fresh samples it decays
// toward zero over the window, so a backend that was slow is tried again
// after a while instead of being shunned forever.
func (b *Backend) DecayedEWMA(now int64, windowNanos int64) float64 {
	return decayed(b.EWMA(), b.idle(now), windowNanos)
}

// decayed is estimate v after idle nanoseconds without a sample: it
// decays toward zero over the window (idle below 0 counts as none).
func decayed(v float64, idle, windowNanos int64) float64 {
	if v == 0 || windowNanos <= 0 {
		return v
	}
	return v * expNeg(float64(max(idle, 0))/float64(windowNanos))
}

// idle is the time since the last latency sample, in nanoseconds (0 when
// the clock reads earlier than the sample).
func (b *Backend) idle(now int64) int64 {
	return max(now-b.ewmaStamp.Load(), 0)
}

// expNeg is e^-x to within 4e-6 relative, for x >= 0 (0 for +Inf and NaN).
// It runs on every ewma pick and every latency sample; math.Exp measured
// ~18 ns a call against ~6 ns for this on the 2-core reference machine,
// and load balancing needs no more digits.
// e^-x = 2^-y with y = x·log2(e) = n + f: 2^-n goes straight into the
// exponent bits and 2^-f = e^(-ln2/2)·e^-z, z = (f-½)·ln2 in ±0.35,
// is a degree-5 Taylor series (error z^6/720).
func expNeg(x float64) float64 {
	if !(x < 700) { // e^-700 is 1e-304: call it 0, and keep n < 1023
		return 0
	}
	if x <= 0 {
		return 1
	}
	y := x * math.Log2E
	n := int64(y)
	z := (y - float64(n) - 0.5) * math.Ln2
	p := 1 - z*(1-z*(1.0/2-z*(1.0/6-z*(1.0/24-z*(1.0/120)))))
	p *= math.Sqrt2 / 2 // e^(-ln2/2)
	return math.Float64frombits(math.Float64bits(p) - uint64(n)<<52)
}
