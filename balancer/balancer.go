package balancer

import (
	"fmt"
	"time"
)

// Target is one backend that may take traffic, with the weight it has in
// this snapshot (the configured weight, or less while slow-starting).
type Target struct {
	Backend *Backend
	Weight  uint32
}

// Picker chooses a target for one request. It is built once from an
// immutable set of targets and then used by every request concurrently:
// Pick never blocks, never locks and never allocates.
type Picker interface {
	// Pick returns an index into the targets the picker was built from,
	// or -1 when there is none. key is the request's hash key for the hash
	// algorithms and a random number for the others; now is the request's
	// clock reading in unix nanoseconds (Pick never reads the clock).
	Pick(key uint64, now int64) int
}

// RetryPicker is a Picker whose Pick moves state all requests share (round
// robin's position), which a retry must not move: with a refusing backend
// before a working one in the rotation, retries that advanced it put the
// refusing one first for every request. PickRetry chooses for a retry
// from key alone.
type RetryPicker interface {
	Picker
	PickRetry(key uint64, now int64) int
}

// PickRetry picks for a retry: p's PickRetry where it has one, else Pick.
func PickRetry(p Picker, key uint64, now int64) int {
	if r, ok := p.(RetryPicker); ok {
		return r.PickRetry(key, now)
	}
	return p.Pick(key, now)
}

// Options tune the algorithms that need tuning.
type Options struct {
	// Seed is injected randomness for start offsets (round robin).
	Seed uint64
	// EWMAWindow is the decay window of the ewma algorithm (default 10s).
	EWMAWindow time.Duration
	// MaglevTableSize is the maglev lookup table size (a prime; default
	// 65537, and a non-prime is rounded up to the next prime).
	MaglevTableSize int
}

// Defaults for the zero values of Options.
const (
	defaultEWMAWindow      = 10 * time.Second
	defaultMaglevTableSize = 65537
)

// Builder builds a picker from targets; it runs on the control plane and
// may take its time and allocate.
type Builder func(targets []Target, opts Options) Picker

// builders maps algorithm names to their builders. It is never written
// after package initialisation.
var builders = map[string]Builder{
	"round_robin": newRoundRobin,
	"random":      newRandom,
	"least_conn":  newLeastConn,
	"p2c":         newP2C,
	"ewma":        newEWMA,
	"ring_hash":   newRingHash,
	"maglev":      newMaglev,
}

// Build returns the picker for the named algorithm.
func Build(algorithm string, targets []Target, opts Options) (Picker, error) {
	b, ok := builders[algorithm]
	if !ok {
		return nil, fmt.Errorf("balancer: unknown algorithm %q", algorithm)
	}
	return b(targets, opts), nil
}

// Known reports whether the named algorithm exists.
func Known(algorithm string) bool {
	_, ok := builders[algorithm]
	return ok
}

// none is the picker of an empty target set.
type none struct{}

func (none) Pick(uint64, int64) int { return -1 }
