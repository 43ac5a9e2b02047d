package cache

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRotateAt(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		life          time.Duration
		ratio, jitter float64
		want          time.Duration // after notBefore
	}{
		{"half of a day", 24 * time.Hour, 0.5, 0, 12 * time.Hour},
		{"istio 90d at 0.5", 90 * 24 * time.Hour, 0.5, 0, 45 * 24 * time.Hour},
		{"small ratio rotates late", time.Hour, 0.1, 0, 54 * time.Minute},
		{"positive jitter rotates earlier", time.Hour, 0.5, 0.1, 24 * time.Minute},
		{"negative jitter rotates later", time.Hour, 0.5, -0.1, 36 * time.Minute},
		{"clamped at expiry", time.Hour, 0.05, -0.1, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rotateAt(nb, nb.Add(tc.life), tc.ratio, tc.jitter).Sub(nb)
			if d := got - tc.want; d > time.Millisecond || d < -time.Millisecond {
				t.Errorf("rotateAt = +%s, want +%s", got, tc.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for c := codes.Code(0); c <= codes.Unauthenticated; c++ {
		if c == codes.OK {
			continue
		}
		retry := map[codes.Code]bool{codes.Unavailable: true, codes.DeadlineExceeded: true, codes.ResourceExhausted: true,
			codes.Aborted: true, codes.Internal: true, codes.Unknown: true, codes.Canceled: true}[c]
		err := classify(status.Error(c, "x"))
		if IsPermanent(err) == retry {
			t.Errorf("%s: permanent=%v, want %v", c, IsPermanent(err), !retry)
		}
	}
	if IsPermanent(classify(errors.New("chain does not verify"))) {
		t.Error("a local verification failure must be retried")
	}
}
