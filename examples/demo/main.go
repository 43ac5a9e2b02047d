// Command demo runs a whole mesh on one machine: istiod-lite serving a copy of
// examples/mesh, and three proxyless workloads (greeter v1, greeter v2, client),
// each with its own pilot-agent. As root, each workload runs in its own network
// namespace cabled to a bridge namespace; otherwise on loopback addresses. It
// prints a live summary, shifts traffic by rewriting the VirtualService
// (100/0 → 50/50 → 0/100), and on Ctrl-C stops every process and removes every
// namespace and file it made. The orchestration lives in test/meshrun, shared
// with the end-to-end tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	binDir := flag.String("bin", "bin", "directory holding pilot-agent, istiod-lite, greeter and client")
	meshDir := flag.String("mesh", "examples/mesh", "mesh config to copy and serve")
	phase := flag.Duration("phase", 6*time.Second, "how long each traffic-shift phase lasts")
	once := flag.Bool("once", false, "stop after the traffic shift instead of running until Ctrl-C (used by tests)")
	keep := flag.Bool("keep", false, "keep the temp directory (logs, certs) after exit")
	netns := flag.String("netns", "auto", "run each workload in its own network namespace: auto (when root), on, off")
	subnet := flag.String("subnet", "10.77.0.0/24", "workload subnet in network-namespace mode (the bridge takes .1, workloads .11, .12, .21)")
	flag.Parse()

	o := options{binDir: *binDir, meshDir: *meshDir, phase: *phase, once: *once, keep: *keep}
	switch *netns {
	case "auto":
		o.netns = os.Geteuid() == 0
	case "on":
		o.netns = true
	case "off":
	default:
		fmt.Fprintf(os.Stderr, "demo: --netns %q: want auto, on or off\n", *netns)
		os.Exit(2)
	}
	if o.netns && os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: --netns on needs root (network namespaces); run as root or use --netns off")
		os.Exit(2)
	}
	p, err := netip.ParsePrefix(*subnet)
	if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
		fmt.Fprintf(os.Stderr, "demo: --subnet %q: want an IPv4 prefix of /24 or larger, e.g. 10.77.0.0/24\n", *subnet)
		os.Exit(2)
	}
	o.subnet = p.Masked()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = run(ctx, o)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
