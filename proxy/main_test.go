package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine of ours
// running: controllers, health probes, servers must all stop. Three fasthttp
// housekeeping goroutines are let through: two sleep out their interval
// (the idle-connection sweep of a HostClient, the idle-worker sweep of a
// Server's pool) and then exit on their own once nothing is left to sweep;
// the third is fasthttp's process-wide Date header clock.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}
