package file

import (
	"time"

	"k8s.io/utils/clock"
)

// debouncer coalesces a burst of file events into one reload: it fires delay
// after the last event, but never later than maxDelay after the first, so a
// directory that never stops changing is still picked up. It is driven from a
// single goroutine and has no locking.
type debouncer struct {
	clk      clock.Clock
	delay    time.Duration
	maxDelay time.Duration

	first time.Time // first event of the pending burst; zero when idle
	timer clock.Timer
}

// trigger records an event and (re)arms the timer.
func (d *debouncer) trigger() {
	now := d.clk.Now()
	if d.first.IsZero() {
		d.first = now
	}
	wait := d.delay
	if left := d.maxDelay - now.Sub(d.first); left < wait {
		wait = max(left, 0)
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	d.timer = d.clk.NewTimer(wait)
}

// C fires when the pending burst is over; it is nil (blocks forever) when idle.
func (d *debouncer) C() <-chan time.Time {
	if d.timer == nil {
		return nil
	}
	return d.timer.C()
}

// fired resets the debouncer after C delivered.
func (d *debouncer) fired() {
	d.first, d.timer = time.Time{}, nil
}

func (d *debouncer) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
	d.fired()
}
