// Command demo runs a whole mesh on one machine: istiod-lite serving a copy of
// examples/mesh, and three proxyless workloads (greeter v1, greeter v2, client),
// each with its own pilot-agent. It prints a live summary, shifts traffic by
// rewriting the VirtualService (100/0 → 50/50 → 0/100), and on Ctrl-C stops
// every process and removes every file it made.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	binDir := flag.String("bin", "bin", "directory holding pilot-agent, istiod-lite, greeter and client")
	meshDir := flag.String("mesh", "examples/mesh", "mesh config to copy and serve")
	phase := flag.Duration("phase", 6*time.Second, "how long each traffic-shift phase lasts")
	once := flag.Bool("once", false, "stop after the traffic shift instead of running until Ctrl-C (used by tests)")
	keep := flag.Bool("keep", false, "keep the temp directory (logs, certs) after exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx, options{binDir: *binDir, meshDir: *meshDir, phase: *phase, once: *once, keep: *keep})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type options struct {
	binDir, meshDir string
	phase           time.Duration
	once, keep      bool
}

func run(ctx context.Context, o options) error {
	bin, err := filepath.Abs(o.binDir)
	if err != nil {
		return err
	}
	for _, b := range []string{"pilot-agent", "istiod-lite", "greeter", "client"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make demo` (it builds everything first)", b, bin)
		}
	}
	root, err := os.MkdirTemp("", "meshlite-demo-")
	if err != nil {
		return err
	}
	m := &mesh{bin: bin, root: root}
	defer func() {
		m.stopAll()
		if o.keep {
			fmt.Printf("kept %s (logs under logs/)\n", root)
		} else {
			os.RemoveAll(root)
		}
	}()
	fmt.Printf("meshlite demo — working directory %s\n", root)
	if _, err := exec.LookPath("envoy"); err != nil {
		fmt.Println("no envoy binary on PATH: every workload runs proxyless (gRPC xDS); the sidecar-mode workload with iptables capture is not shown")
	} else {
		fmt.Println("envoy found on PATH, but the sidecar-mode demo workload is not built yet: every workload runs proxyless")
	}

	if err := m.startControlPlane(ctx, o.meshDir); err != nil {
		return err
	}
	for _, w := range workloads {
		if err := m.startWorkload(ctx, w); err != nil {
			return err
		}
	}
	reports, err := m.startClient(ctx)
	if err != nil {
		return err
	}
	return m.shiftTraffic(ctx, reports, o.phase, o.once)
}

// shiftTraffic walks the VirtualService weights and prints the summary as
// the client reports; the counts follow each edit.
func (m *mesh) shiftTraffic(ctx context.Context, reports <-chan clientReport, phase time.Duration, once bool) error {
	steps := [][2]int{{100, 0}, {50, 50}, {0, 100}}
	last := clientReport{}
	for i, w := range steps {
		if err := m.writeVirtualService(w[0], w[1]); err != nil {
			return err
		}
		fmt.Printf("\n== traffic shift %d/%d: greeter v1 %d%% / v2 %d%% (edited %s)\n", i+1, len(steps), w[0], w[1], m.vsPath())
		end := time.After(phase)
	phaseLoop:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case r, ok := <-reports:
				if !ok {
					return fmt.Errorf("the client exited; see %s", m.logPath("client"))
				}
				last = r
				m.printSummary(r)
			case <-end:
				break phaseLoop
			}
		}
	}
	if last.Failed > 0 {
		fmt.Printf("\n%d RPCs failed (last error: %s)\n", last.Failed, last.LastError)
	}
	if once {
		return nil
	}
	fmt.Println("\nrunning; press Ctrl-C to stop and clean up")
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nstopping: every process is terminated and the temp directory removed")
			return nil
		case r, ok := <-reports:
			if !ok {
				return fmt.Errorf("the client exited; see %s", m.logPath("client"))
			}
			m.printSummary(r)
		}
	}
}

func (m *mesh) printSummary(r clientReport) {
	fmt.Printf("%s  rpcs ok=%d failed=%d  last second: v1=%d v2=%d errors=%d\n",
		r.Time.Format("15:04:05"), r.OK, r.Failed, r.Window["greeter-v1"], r.Window["greeter-v2"], r.WindowFailed)
}

type clientReport struct {
	Time         time.Time        `json:"time"`
	OK           int64            `json:"ok"`
	Failed       int64            `json:"failed"`
	Window       map[string]int64 `json:"window"`
	WindowFailed int64            `json:"windowFailed"`
	ServerID     string           `json:"serverID"`
	SeenAs       string           `json:"seenAs"`
	LastError    string           `json:"lastError"`
}

func decodeReports(r *bufio.Scanner, out chan<- clientReport) {
	defer close(out)
	for r.Scan() {
		var rep clientReport
		if json.Unmarshal(r.Bytes(), &rep) == nil {
			out <- rep
		}
	}
}
