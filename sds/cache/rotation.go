package cache

import (
	"time"
)

// rotateAt is when a certificate valid from notBefore to notAfter should be
// replaced: when ratio of its lifetime is left. jitter (a value in [-1,1) times
// the allowed spread) keeps many workloads from rotating in the same instant.
func rotateAt(notBefore, notAfter time.Time, ratio, jitter float64) time.Time {
	r := ratio + jitter
	r = min(max(r, 0), 1)
	lifetime := notAfter.Sub(notBefore)
	return notAfter.Add(-time.Duration(float64(lifetime) * r))
}
