package main

import (
	"context"
	"fmt"
	"time"

	"github.com/meshlite/meshlite/test/meshrun"
)

// shiftTraffic walks the VirtualService weights and prints the summary as
// the client reports; the counts follow each edit.
func shiftTraffic(ctx context.Context, m *meshrun.Mesh, c *meshrun.Client, phase time.Duration, once bool) error {
	steps := [][2]int{{100, 0}, {50, 50}, {0, 100}}
	var last meshrun.Report
	follow := func(until <-chan time.Time) error {
		for {
			_, _, next := c.Latest()
			if next == nil {
				return fmt.Errorf("the client exited; see %s", c.LogPath)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-until:
				return nil
			case <-next:
				last, _, _ = c.Latest()
				printReport(last)
			}
		}
	}
	for i, w := range steps {
		if err := m.WriteVirtualService(w[0], w[1]); err != nil {
			return err
		}
		fmt.Printf("\n== traffic shift %d/%d: greeter v1 %d%% / v2 %d%% (edited %s)\n", i+1, len(steps), w[0], w[1], m.VirtualServicePath())
		if err := follow(time.After(phase)); err != nil {
			return err
		}
	}
	if last.Failed > 0 {
		fmt.Printf("\n%d RPCs failed (last error: %s)\n", last.Failed, last.LastError)
	}
	if once {
		return nil
	}
	fmt.Println("\nrunning; press Ctrl-C to stop and clean up")
	printWhereToLook(m)
	err := follow(nil)
	if ctx.Err() != nil {
		fmt.Println("\nstopping: every process is terminated, every namespace and the temp directory removed")
		return nil
	}
	return err
}

func printReport(r meshrun.Report) {
	fmt.Printf("%s  rpcs ok=%d failed=%d  last second: v1=%d v2=%d errors=%d  server=%s  client seen as %s\n",
		r.Time.Format("15:04:05"), r.OK, r.Failed, r.Window["greeter-v1"], r.Window["greeter-v2"], r.WindowFailed, r.ServerID, r.SeenAs)
	if r.WindowFailed > 0 {
		fmt.Printf("          last error: %s\n", r.LastError)
	}
}

// printWhereToLook lists the pages to open while the demo runs, with the
// `ip netns exec` prefix when they live in a namespace.
func printWhereToLook(m *meshrun.Mesh) {
	n := m.Network()
	fmt.Println("\nwhere to look:")
	fmt.Printf("  %scurl -s %s/debug/syncz          # istiod-lite: each proxy, sent and ACKed versions\n", n.Where(""), m.DebugURL())
	fmt.Printf("  %scurl -s %s/metrics              # istiod-lite: pushes, config rejections\n", n.Where(""), m.DebugURL())
	for _, w := range m.Options().Workloads {
		c := m.Cert(w)
		fmt.Printf("  %scurl -s %s/healthz/ready  # %s agent (%s, cert expires %s); also /stats/prometheus, /debug/syncz\n",
			n.Where(w.Name), m.StatusURL(w), w.Name, c.ID, c.Expiry())
	}
	fmt.Printf("  logs: %s\n", m.LogPath("*"))
}
