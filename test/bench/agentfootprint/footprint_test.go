package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkAgentFootprint is the `make bench` entry: one full run (a local
// istiod-lite, then a proxyless pilot-agent for 10 s), printing each figure
// on its own line and reporting them as benchmark metrics, then the floor
// program's RSS after the same settle time. It uses
// $MESHLITE_BIN's binaries, or builds them. -short settles for 2 s.
func BenchmarkAgentFootprint(b *testing.B) {
	cfg := Config{Downstream: true, Log: os.Stderr}
	if testing.Short() {
		cfg.Settle = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var res *Result
	for i := 0; i < b.N; i++ {
		var err error
		if res, err = Run(ctx, cfg); err != nil {
			b.Fatal(err)
		}
	}
	res.Print(os.Stdout)
	// The floor puts the RSS in perspective: what the libraries alone cost.
	floor, err := RunFloor(ctx, res.Settle, os.Stderr)
	if err != nil {
		b.Fatal(err)
	}
	floor.Print(os.Stdout)
	b.ReportMetric(float64(res.StartToCert)/float64(time.Millisecond), "start-to-cert-ms")
	b.ReportMetric(float64(res.RSS)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(res.BinarySize)/(1<<20), "binary-MiB")
}
