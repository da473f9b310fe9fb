package proxy

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestDoWaitsForTakenCommand: once the control goroutine has taken a
// command, do reports that command's own result even when its context
// ends first. Reporting ErrStopped there would call a change failed that
// is already live. Before the control goroutine takes it, the context
// still ends the wait.
func TestDoWaitsForTakenCommand(t *testing.T) {
	c := NewController(New(), zerolog.Nop())
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); c.Run(runCtx) }()
	defer func() { stop(); <-ran }()

	sentinel := errors.New("the command's own result")
	var finished atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := c.do(ctx, func() error {
		time.Sleep(100 * time.Millisecond) // outlives ctx
		finished.Store(true)
		return sentinel
	})
	if !errors.Is(err, sentinel) || !finished.Load() {
		t.Fatalf("do() = %v (command finished: %v), want the command's result after it finished", err, finished.Load())
	}

	// A command the control goroutine never takes (it is busy) still
	// gives up with the context.
	busy, taken := make(chan struct{}), make(chan struct{})
	go func() {
		_ = c.do(context.Background(), func() error { close(taken); <-busy; return nil })
	}()
	<-taken
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	err = c.do(ctx2, func() error { return nil })
	close(busy)
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("do() while the control goroutine is busy = %v, want ErrStopped", err)
	}
}
