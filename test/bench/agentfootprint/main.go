// Command agentfootprint measures pilot-agent in proxyless mode against a
// local istiod-lite: the time from process start to the workload certificate
// written to OUTPUT_CERTS, the resident memory after a settle time with the
// status server, secret cache and xDS proxy (with a downstream stream and its
// upstream connection) running, and the static stripped binary size. It
// prints one line per figure.
//
//	go run ./test/bench/agentfootprint [-bin bin/] [-settle 10s] [-heapprofile heap.prof] [-inittrace] [-floor]
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
	var cfg Config
	flag.StringVar(&cfg.BinDir, "bin", "", "directory with pilot-agent and istiod-lite (default $MESHLITE_BIN, else build them static and stripped)")
	flag.DurationVar(&cfg.Settle, "settle", 10*time.Second, "how long the agent runs before its RSS is read")
	flag.BoolVar(&cfg.Downstream, "downstream", true, "open an ADS stream through the agent's xDS proxy, as a proxyless app does")
	flag.StringVar(&cfg.HeapProfile, "heapprofile", "", "save the agent's heap profile (from its status port) to this file")
	flag.BoolVar(&cfg.InitTrace, "inittrace", false, "run the agent with GODEBUG=inittrace=1 and print the costliest package initialisers")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the working directory (logs, certificates)")
	runs := flag.Int("runs", 1, "repeat the start→cert measurement this many times (fresh agent and CA each time)")
	floor := flag.Bool("floor", false, "also measure the floor program: the libraries the proxyless agent needs, linked and idle")
	flag.Parse()
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *floor {
		f, err := RunFloor(ctx, cfg.Settle, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "agentfootprint:", err)
			os.Exit(1)
		}
		f.Print(os.Stdout)
	}
	for i := range *runs {
		res, err := Run(ctx, cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "agentfootprint:", err)
			os.Exit(1)
		}
		if *runs > 1 {
			fmt.Printf("run %d/%d\n", i+1, *runs)
		}
		res.Print(os.Stdout)
	}
}
