//go:build race

package main

// raceEnabled: the tests run under the race detector, so the sluice they
// start as a process is built with it too.
const raceEnabled = true
