package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"time"

	"github.com/meshlite/meshlite/test/meshrun"
)

type options struct {
	binDir, meshDir string
	phase           time.Duration
	once, keep      bool
	netns           bool
	subnet          netip.Prefix
}

func run(ctx context.Context, o options) (err error) {
	root, err := os.MkdirTemp("", "meshlite-demo-")
	if err != nil {
		return err
	}
	fmt.Printf("meshlite demo — working directory %s\n", root)
	mo := meshrun.Options{BinDir: o.binDir, MeshDir: o.meshDir, Root: root, Log: os.Stdout}
	var ns *meshrun.Netns
	defer func() {
		// Processes first (they hold the namespaces' sockets), then the
		// namespaces, then the files: also on every failure path.
		if ns != nil {
			if cerr := ns.Close(); cerr != nil {
				fmt.Fprintf(os.Stderr, "demo: removing network namespaces: %v (remove them with `ip netns del`)\n", cerr)
			}
		}
		if o.keep {
			fmt.Printf("kept %s (logs under logs/)\n", root)
		} else {
			os.RemoveAll(root)
		}
	}()
	if o.netns {
		if stale, err := meshrun.SweepStale(ctx); len(stale) > 0 || err != nil {
			fmt.Printf("removed network namespaces left by a killed demo: %v (errors: %v)\n", stale, err)
		}
		if ns, err = meshrun.NewNetns(ctx, "", o.subnet); err != nil {
			return err
		}
		mo.Network, mo.IstiodIP = ns, ns.BridgeIP().String()
		mo.Workloads = meshrun.DefaultWorkloads()
		next := o.subnet.Addr()
		for i, host := range []int{11, 12, 21} {
			w := &mo.Workloads[i]
			a := next.As4()
			a[3] = byte(host)
			w.IP = netip.AddrFrom4(a).String()
			// Own namespace, own port space: every agent on Istio's 15020.
			w.StatusPort = 15020
			if err := ns.AddWorkload(ctx, w.Name, netip.AddrFrom4(a)); err != nil {
				return err
			}
		}
		fmt.Printf("running as root: each workload in its own network namespace on %s, cabled to bridge namespace %s (istiod-lite at %s); namespaces: %v\n",
			o.subnet, ns.Namespaces()[0], ns.BridgeIP(), ns.Namespaces())
	} else {
		why := "not root"
		if os.Geteuid() == 0 {
			why = "--netns off"
		}
		fmt.Printf("%s: every workload on its own loopback address in this network namespace\n", why)
	}
	m, err := meshrun.New(mo)
	if err != nil {
		return err
	}
	defer m.Stop()
	if _, err := exec.LookPath("envoy"); err != nil {
		fmt.Println("no envoy binary on PATH: every workload runs proxyless (gRPC xDS); the sidecar-mode workload with iptables capture is not shown")
	} else {
		fmt.Println("envoy found on PATH, but the sidecar-mode demo workload is not built yet: every workload runs proxyless")
	}
	client, err := m.StartAll(ctx)
	if err != nil {
		return err
	}
	printWhereToLook(m)
	return shiftTraffic(ctx, m, client, o.phase, o.once)
}
