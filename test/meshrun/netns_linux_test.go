package meshrun

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command is missing (apt-get install -y iproute2)")
	}
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

// Workloads in their own namespaces reach each other and the control plane
// over the bridge; Close removes every namespace.
func TestNetnsWorkloadsShareTheBridge(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	n, err := NewNetns(ctx, "", netip.MustParsePrefix("10.79.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	for name, addr := range map[string]string{"a": "10.79.0.11", "b": "10.79.0.12"} {
		if err := n.AddWorkload(ctx, name, netip.MustParseAddr(addr)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.AddWorkload(ctx, "outside", netip.MustParseAddr("10.80.0.1")); err == nil {
		t.Error("AddWorkload accepted an address outside the subnet")
	}
	out, err := n.Command("a", "ip", "-4", "-o", "addr", "show", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.79.0.11/24") {
		t.Errorf("workload a's eth0: %s (%v), want 10.79.0.11/24", out, err)
	}
	if _, err := exec.LookPath("ping"); err == nil {
		for _, dst := range []string{"10.79.0.12", n.BridgeIP().String()} {
			if out, err := n.Command("a", "ping", "-c", "1", "-W", "2", dst).CombinedOutput(); err != nil {
				t.Errorf("ping %s from workload a: %v\n%s", dst, err, out)
			}
		}
	}
	made := n.Namespaces()
	if len(made) != 3 {
		t.Fatalf("namespaces = %v, want the bridge's and two workloads'", made)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	live := netnsList(t)
	for _, ns := range made {
		if strings.Contains(live, ns) {
			t.Errorf("namespace %s left after Close", ns)
		}
	}
}

func TestSweepStaleRemovesOnlyDeadRunsNamespaces(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := "mlmesh-" + strconv.Itoa(dead.Process.Pid) + "-sweeptest"
	alive := "mlmesh-1-sweeptest" // PID 1 always exists
	for _, ns := range []string{stale, alive} {
		if err := ip(ctx, "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ip(context.Background(), "netns", "del", ns) })
	}
	deleted, err := SweepStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(deleted, " "), stale) {
		t.Errorf("SweepStale deleted %v, want %s among them", deleted, stale)
	}
	live := netnsList(t)
	if strings.Contains(live, stale) {
		t.Errorf("%s survived the sweep", stale)
	}
	if !strings.Contains(live, alive) {
		t.Errorf("%s (a live process's) was swept", alive)
	}
}
