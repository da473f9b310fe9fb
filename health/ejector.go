package health

import (
	"math"
	"slices"
	"time"

	"sluice/config"
)

// defaultBaseEjection is used when the config leaves BaseEjectionTime unset.
const defaultBaseEjection = 30 * time.Second

// Ejector decides passive ejections for one pool: how long a backend whose
// Outlier tripped stays out, and whether taking it out is allowed at all.
// It belongs to the control plane: it is not safe for concurrent use and is
// meant to be owned by the reconciler. It keeps no timers; the owner asks
// NextExpiry and calls Expire when that time comes.
//
// Backoff: the n-th ejection lasts BaseEjectionTime × 2^(n-1), capped at
// MaxEjectionTime. Decay: the count of past ejections drops by one for every
// full BaseEjectionTime the backend spends back in the pool after an
// ejection ends, so a backend that stays good is soon forgiven while one
// that keeps failing keeps its long ejections.
type Ejector struct {
	cfg     config.OutlierDetection
	entries map[string]*ejection
}

type ejection struct {
	// count is the number of past ejections as of back.
	count   int
	ejected bool
	until   time.Time // end of the current ejection, when ejected
	back    time.Time // when the last ejection ended, when not ejected
}

// NewEjector returns an Ejector for one pool. A BaseEjectionTime <= 0 means
// 30s; a MaxEjectionTime <= 0 means no cap.
func NewEjector(cfg config.OutlierDetection) *Ejector {
	if cfg.BaseEjectionTime <= 0 {
		cfg.BaseEjectionTime = defaultBaseEjection
	}
	if cfg.MaxEjectionTime > 0 && cfg.MaxEjectionTime < cfg.BaseEjectionTime {
		cfg.MaxEjectionTime = cfg.BaseEjectionTime
	}
	return &Ejector{cfg: cfg, entries: make(map[string]*ejection)}
}

// Eject takes addr out of the pool from now on, for poolSize backends in all
// (ejected ones included), and returns when it comes back. It refuses
// (ok=false) when the ejected share of the pool would then exceed
// MaxEjectionPercent: with 50% and 2 backends one may be ejected, never both;
// with 0% none. One backend may always be ejected when none is (Envoy's
// rule): with 10% a pool of fewer than 10 could otherwise eject nothing,
// and 10% is a common setting. An addr already ejected is left as it is: Eject returns its
// current end and false. Call Expire first when an ejection may have ended.
func (e *Ejector) Eject(addr string, now time.Time, poolSize int) (until time.Time, ok bool) {
	ejected := 0
	for _, x := range e.entries {
		if x.ejected {
			ejected++
		}
	}
	return e.EjectAmong(addr, now, poolSize, ejected)
}

// EjectAmong is Eject for an owner that counts the pool itself: poolSize
// backends share the traffic, and ejected of them are ejected now. An
// ejected backend that no longer takes traffic (drained, weight 0) leaves
// both counts, so that it holds no share of MaxEjectionPercent.
func (e *Ejector) EjectAmong(addr string, now time.Time, poolSize, ejected int) (until time.Time, ok bool) {
	ent := e.entries[addr]
	if ent != nil && ent.ejected {
		return ent.until, false
	}
	first := ejected == 0 && e.cfg.MaxEjectionPercent > 0 && poolSize > 0
	if !first && e.cfg.MaxEjectionPercent.CmpShare(ejected+1, poolSize) > 0 {
		return time.Time{}, false
	}
	if ent == nil {
		ent = &ejection{}
		e.entries[addr] = ent
	} else {
		ent.count = e.decayed(ent, now)
	}
	d := e.duration(ent.count)
	ent.until = now.Add(d)
	if e.cfg.MaxEjectionTime <= 0 || d < e.cfg.MaxEjectionTime {
		// The count stops growing at the cap, as Envoy's multiplier
		// does: ejections at max_ejection_time added to it, and a backend
		// that flapped all day stayed at the cap for hours of good
		// behaviour (found by review).
		ent.count++
	}
	ent.ejected = true
	return ent.until, true
}

// decayed is the count of past ejections of a backend back in the pool,
// less one per BaseEjectionTime since it came back.
func (e *Ejector) decayed(ent *ejection, now time.Time) int {
	good := now.Sub(ent.back)
	if good <= 0 {
		return ent.count
	}
	n := good / e.cfg.BaseEjectionTime
	if n >= time.Duration(ent.count) {
		return 0
	}
	return ent.count - int(n)
}

// duration is the length of an ejection after n earlier ones.
func (e *Ejector) duration(n int) time.Duration {
	d, limit := e.cfg.BaseEjectionTime, e.cfg.MaxEjectionTime
	if limit <= 0 {
		limit = math.MaxInt64
	}
	for ; n > 0 && d < limit; n-- {
		if d > limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}

// Expire ends the ejections due at or before now and returns their addrs,
// sorted, so the owner puts them back in the pool (and Resets their
// Outliers). It returns nil when none ended.
func (e *Ejector) Expire(now time.Time) []string {
	var back []string
	for addr, ent := range e.entries {
		if ent.ejected && !ent.until.After(now) {
			ent.ejected = false
			ent.back = now
			back = append(back, addr)
		}
	}
	slices.Sort(back)
	return back
}

// Ejected reports whether addr is ejected, and until when. An ejection stays
// in force until Expire ends it, even past its end time.
func (e *Ejector) Ejected(addr string) (until time.Time, ok bool) {
	if ent := e.entries[addr]; ent != nil && ent.ejected {
		return ent.until, true
	}
	return time.Time{}, false
}

// Forget drops everything known about addr, ejection and history, when the
// backend leaves the pool. A backend that comes back later starts afresh.
func (e *Ejector) Forget(addr string) { delete(e.entries, addr) }

// NextExpiry returns the earliest end of a current ejection, for the owner's
// timer; ok is false when nothing is ejected.
func (e *Ejector) NextExpiry() (t time.Time, ok bool) {
	for _, ent := range e.entries {
		if ent.ejected && (!ok || ent.until.Before(t)) {
			t, ok = ent.until, true
		}
	}
	return t, ok
}
