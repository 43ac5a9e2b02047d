package file

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func fired(d *debouncer) bool {
	select {
	case <-d.C():
		d.fired()
		return true
	default:
		return false
	}
}

func TestDebouncerCoalescesBurst(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	d := &debouncer{clk: clk, delay: 100 * time.Millisecond, maxDelay: time.Second}
	if d.C() != nil {
		t.Fatal("idle debouncer has a channel")
	}
	for i := 0; i < 5; i++ { // events 50ms apart keep postponing
		d.trigger()
		clk.Step(50 * time.Millisecond)
		if fired(d) {
			t.Fatalf("fired during the burst at event %d", i)
		}
	}
	clk.Step(49 * time.Millisecond)
	if fired(d) {
		t.Fatal("fired before the quiet period ended")
	}
	clk.Step(time.Millisecond)
	if !fired(d) {
		t.Fatal("did not fire 100ms after the last event")
	}
	clk.Step(time.Second)
	if fired(d) {
		t.Fatal("fired twice for one burst")
	}
}

func TestDebouncerMaxDelay(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	d := &debouncer{clk: clk, delay: 100 * time.Millisecond, maxDelay: 300 * time.Millisecond}
	n := 0
	for i := 0; i < 20; i++ { // a never-ending stream of events
		d.trigger()
		clk.Step(50 * time.Millisecond)
		if fired(d) {
			n++
			if i < 5 {
				t.Fatalf("fired too early at event %d", i)
			}
		}
	}
	if n < 2 {
		t.Errorf("fired %d times in 1s of constant events, want a reload at least every 300ms", n)
	}
}
