package proxy

import (
	"context"
	"testing"
	"time"

	"sluice/metrics"
)

// TestBackendGaugesSetOncePerRebuild: a rebuild of a pool sets each
// backend's sluice_backend_up and sluice_backend_weight once, to the new
// value, so a scrape during a rebuild never sees a backend that stays in
// use down or at weight 0. (Found by review: every member's gauges were
// set to 0 first and then again for those in use, and slow start rebuilds
// every 250 ms.) The pool is rebuilt many times, by admin weight changes
// to the other backend, while another goroutine scrapes.
func TestBackendGaugesSetOncePerRebuild(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "b0"), newModalBackend(t, "b1")}
	m := metrics.New("test")
	px := startProxyWith(t, outlierYAML("", bs, []int{2, 2}, ""), m)
	stop := make(chan struct{})
	type seen struct{ scrapes, blinks int }
	result := make(chan seen, 1)
	go func() {
		var s seen
		for {
			select {
			case <-stop:
				result <- s
				return
			default:
			}
			mfs, err := m.Registry().Gather()
			if err != nil {
				continue
			}
			s.scrapes++
			for _, mf := range mfs {
				if n := mf.GetName(); n != "sluice_backend_up" && n != "sluice_backend_weight" {
					continue
				}
				for _, mt := range mf.GetMetric() {
					for _, l := range mt.GetLabel() {
						if l.GetName() == "backend" && l.GetValue() == bs[0].addr && mt.GetGauge().GetValue() == 0 {
							s.blinks++
						}
					}
				}
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rebuilds := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); rebuilds++ {
		if err := px.ctrl.SetWeight(ctx, "p", bs[1].addr, uint32(1+rebuilds%2)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	s := <-result
	if s.blinks > 0 {
		t.Errorf("%d of %d scrapes during %d rebuilds saw b0, in use throughout, down or at weight 0", s.blinks, s.scrapes, rebuilds)
	}
	if s.scrapes == 0 || rebuilds < 100 {
		t.Fatalf("%d scrapes, %d rebuilds: too few to tell", s.scrapes, rebuilds)
	}
}
