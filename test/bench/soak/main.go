// Command soak runs istiod-lite the way a small mesh would for a while:
// 1000 simulated Envoy sidecars on ADS (real gRPC streams, sidecar node IDs
// and metadata, wildcard CDS/LDS then EDS/RDS by name, every response ACKed),
// 200 agents' CSRs (real CreateCertificate calls over TLS with service-account
// JWTs) spread over the run, and a VirtualService change every 5 s for two
// minutes. It prints push-to-ACK and CSR latency percentiles, istiod-lite's
// RSS and CPU, and every error (a healthy run has none), one figure per line.
//
//	go run ./test/bench/soak                                  # the full 2-minute soak
//	go run ./test/bench/soak -duration 30s -bin bin/istiod-lite
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	cfg := defaultConfig()
	flag.IntVar(&cfg.Sidecars, "sidecars", cfg.Sidecars, "simulated Envoy sidecars, each with its own ADS connection")
	flag.IntVar(&cfg.Shapes, "shapes", cfg.Shapes, "distinct sidecar label sets (app=load-<n>)")
	flag.IntVar(&cfg.Agents, "agents", cfg.Agents, "agents whose CSRs are sent, spread evenly over -duration")
	flag.IntVar(&cfg.Services, "services", cfg.Services, "services in the mesh besides greeter")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the soak runs after every sidecar connected")
	flag.DurationVar(&cfg.Interval, "interval", cfg.Interval, "time between VirtualService changes")
	flag.StringVar(&cfg.Bin, "bin", cfg.Bin, "istiod-lite binary (default $MESHLITE_BIN/istiod-lite, else built with go build)")
	flag.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "give up when connecting, one change or one CSR takes longer than this")
	flag.StringVar(&cfg.LogLevel, "serverlog", cfg.LogLevel, "istiod-lite --log_output_level (its log is printed at the end unless warn)")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of istiod-lite over the first 30 s of the soak to this file")
	flag.BoolVar(&cfg.Verbose, "v", false, "print each change's latency spread")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+10*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	res.Print(os.Stdout)
	if len(res.Errors) > 0 {
		os.Exit(1)
	}
}
