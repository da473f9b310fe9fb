// Package health decides whether backends should take traffic. It holds the
// mechanisms only: active probes (Checker), passive outlier detection
// (Outlier on the data plane, Ejector on the control plane), the slow-start
// ramp and the panic-mode test. It emits health transitions as Events and is
// never consulted per request: the owner folds the events into the immutable
// snapshot the data plane reads. It knows nothing of HTTP routing.
package health

import (
	"time"

	"sluice/config"
)

// Sources of an Event.
const (
	SourceActive  = "active"  // a probe sent by the Checker
	SourcePassive = "passive" // failures seen on real traffic
)

// Event is one health transition of one backend, or, for an unhealthy
// backend, a failing probe's new reason.
type Event struct {
	Pool string
	Addr string
	// Healthy is the backend's new state.
	Healthy bool
	// Reason is the result that caused the transition, such as "status 503",
	// "connect: connection refused" or "timeout"; while the backend stays
	// unhealthy, the last probe's when it differs from the one before.
	Reason string
	// Source is SourceActive or SourcePassive.
	Source string
	// Epoch is the Target's of the probes that sent an active Event.
	Epoch uint64
}

// SlowStartWeight returns the weight of a backend that joined (or came back)
// at since, ramping linearly from a floor of 10% of weight (at least 1) to
// the full weight over window. ramping is true while the returned weight is
// still below weight and will grow, so the owner knows to rebuild again; it
// is false once the window has passed, when window <= 0, or when weight is
// too small to ramp (0 or 1). A since in the future counts as now.
func SlowStartWeight(weight uint32, since, now time.Time, window time.Duration) (w uint32, ramping bool) {
	floor := weight / 10
	if floor < 1 {
		floor = 1
	}
	if window <= 0 || weight <= floor {
		return weight, false
	}
	elapsed := now.Sub(since)
	if elapsed >= window {
		return weight, false
	}
	if elapsed < 0 {
		elapsed = 0
	}
	w = floor + uint32(float64(weight-floor)*float64(elapsed)/float64(window))
	if w >= weight {
		return weight, false
	}
	return w, true
}

// Panic reports whether a pool is in panic mode: so few of its backends are
// healthy (fewer than threshold percent of total) that the owner should
// ignore health and spread traffic over all of them rather than overload the
// few that are left. A threshold of 0 turns panic mode off.
func Panic(healthy, total int, threshold config.Percent) bool {
	return threshold > 0 && threshold.CmpShare(healthy, total) < 0
}
