// Command xdsload measures istiod-lite's xDS push fan-out: it starts
// `istiod-lite discovery` on a generated config directory, connects N
// simulated proxyless gRPC clients (real ADS streams that request and ACK
// like grpc-go), edits the VirtualService file, and reports how long each
// client takes to ACK the new route version, plus the server's RSS and CPU.
//
//	go run ./test/bench/xdsload -clients 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	cfg := defaultConfig()
	flag.IntVar(&cfg.Clients, "clients", cfg.Clients, "simulated proxyless gRPC clients")
	flag.IntVar(&cfg.Services, "services", cfg.Services, "services in the mesh besides greeter (each adds listeners, routes, clusters, endpoints)")
	flag.IntVar(&cfg.Edits, "edits", cfg.Edits, "VirtualService edits to measure")
	flag.StringVar(&cfg.Bin, "bin", cfg.Bin, "istiod-lite binary (default $MESHLITE_BIN/istiod-lite, else built with go build)")
	flag.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "give up when a phase takes longer than this")
	flag.StringVar(&cfg.Profile, "cpuprofile", "", "write a 5s CPU profile of istiod-lite taken during the edits to this file")
	flag.StringVar(&cfg.HeapProfile, "heapprofile", "", "write istiod-lite's heap profile at the end to this file")
	flag.StringVar(&cfg.LogLevel, "serverlog", cfg.LogLevel, "istiod-lite --log_output_level (its log is printed at the end unless warn)")
	flag.Func("serverenv", "KEY=VALUE added to istiod-lite's environment (repeatable)", func(v string) error {
		cfg.ServerEnv = append(cfg.ServerEnv, v)
		return nil
	})
	flag.BoolVar(&cfg.Verbose, "v", false, "print each edit's latency spread")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xdsload:", err)
		os.Exit(1)
	}
	res.Print(os.Stdout)
}
