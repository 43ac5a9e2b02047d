package main

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkXDSLoad is the `make bench` entry: one full load run (default
// 1000 clients; XDSLOAD_CLIENTS and XDSLOAD_EDITS override), with the figures
// printed one per line and reported as benchmark metrics. A run takes several
// seconds, so the benchmark framework runs it once.
func BenchmarkXDSLoad(b *testing.B) {
	cfg := defaultConfig()
	if v, err := strconv.Atoi(os.Getenv("XDSLOAD_CLIENTS")); err == nil && v > 0 {
		cfg.Clients = v
	}
	if v, err := strconv.Atoi(os.Getenv("XDSLOAD_EDITS")); err == nil && v > 0 {
		cfg.Edits = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var res *Result
	for i := 0; i < b.N; i++ {
		var err error
		if res, err = Run(ctx, cfg); err != nil {
			b.Fatal(err)
		}
	}
	res.Print(os.Stdout)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(res.PushToAck, .50)), "p50-ms")
	b.ReportMetric(ms(percentile(res.PushToAck, .99)), "p99-ms")
	b.ReportMetric(float64(res.RSSBytes)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(res.Clients), "clients")
}
