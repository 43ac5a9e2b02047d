package meshrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	vnetns "github.com/vishvananda/netns"
)

// Netns puts the control plane in a "bridge" network namespace holding a
// Linux bridge, and each workload in its own namespace joined to that bridge
// by a veth pair, as pods on a node are. Nothing is created in, or changed
// about, the namespace the orchestrator runs in: no links, routes or rules.
// Close deletes every namespace it made (and with them every veth).
type Netns struct {
	prefix string
	subnet netip.Prefix
	bridge netip.Addr

	mu       sync.Mutex
	made     []string          // namespaces to delete, in creation order
	byName   map[string]string // workload name -> namespace name
	nextVeth int
}

// NewNetns creates the bridge namespace. prefix names everything it creates
// ("" picks "mlmesh-<pid>-<random>"); the bridge takes the subnet's first
// address, which is where the control plane listens.
func NewNetns(ctx context.Context, prefix string, subnet netip.Prefix) (*Netns, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("network namespaces need the ip command (apt-get install -y iproute2): %w", err)
	}
	if !subnet.Addr().Is4() || subnet.Bits() > 24 {
		return nil, fmt.Errorf("netns subnet %s: want an IPv4 prefix of /24 or larger", subnet)
	}
	if prefix == "" {
		// The PID lets SweepStale tell a dead run's namespaces from a live one's.
		var b [2]byte
		_, _ = rand.Read(b[:])
		prefix = fmt.Sprintf("mlmesh-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	}
	subnet = subnet.Masked()
	n := &Netns{prefix: prefix, subnet: subnet, bridge: subnet.Addr().Next(), byName: map[string]string{}}
	br := n.bridgeNS()
	steps := [][]string{
		{"netns", "add", br},
		{"-n", br, "link", "set", "lo", "up"},
		{"-n", br, "link", "add", "br0", "type", "bridge"},
		{"-n", br, "addr", "add", fmt.Sprintf("%s/%d", n.bridge, subnet.Bits()), "dev", "br0"},
		{"-n", br, "link", "set", "br0", "up"},
	}
	for i, s := range steps {
		if err := ip(ctx, s...); err != nil {
			_ = n.Close()
			return nil, err
		}
		if i == 0 {
			n.made = append(n.made, br)
		}
	}
	return n, nil
}

// BridgeIP is the control plane's address, reachable from every workload.
func (n *Netns) BridgeIP() netip.Addr { return n.bridge }

// Subnet is the workloads' subnet.
func (n *Netns) Subnet() netip.Prefix { return n.subnet }

// Namespaces lists the namespaces made so far (bridge first).
func (n *Netns) Namespaces() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.made...)
}

func (n *Netns) bridgeNS() string { return n.prefix + "-br" }

// AddWorkload creates the workload's namespace with eth0 at addr, cabled to
// the bridge.
func (n *Netns) AddWorkload(ctx context.Context, name string, addr netip.Addr) error {
	if !n.subnet.Contains(addr) || addr == n.bridge {
		return fmt.Errorf("workload %s address %s: must be inside %s and not the bridge's %s", name, addr, n.subnet, n.bridge)
	}
	n.mu.Lock()
	ns := fmt.Sprintf("%s-%d", n.prefix, len(n.made))
	n.nextVeth++
	veth := fmt.Sprintf("veth%d", n.nextVeth)
	n.mu.Unlock()
	br := n.bridgeNS()
	if err := ip(ctx, "netns", "add", ns); err != nil {
		return err
	}
	n.mu.Lock()
	n.made = append(n.made, ns)
	n.byName[name] = ns
	n.mu.Unlock()
	for _, s := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		// Created inside the bridge namespace, the pair never exists in ours.
		{"-n", br, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", br, "link", "set", veth, "master", "br0", "up"},
		{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", addr, n.subnet.Bits()), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	} {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// Close deletes every namespace made, workloads first; their veths go with them.
func (n *Netns) Close() error {
	n.mu.Lock()
	made := n.made
	n.made = nil
	n.mu.Unlock()
	var errs []error
	for i := len(made) - 1; i >= 0; i-- {
		if err := ip(context.Background(), "netns", "del", made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *Netns) nsFor(name string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ns, ok := n.byName[name]; ok {
		return ns
	}
	return n.bridgeNS()
}

// Command runs bin in the workload's namespace ("" or an unknown name: the
// bridge namespace). ip netns exec execs bin, so the PID is bin's own.
func (n *Netns) Command(name, bin string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.nsFor(name), bin}, args...)...)
}

// Where is the shell prefix that runs a command next to the workload.
func (n *Netns) Where(name string) string { return "ip netns exec " + n.nsFor(name) + " " }

// DialContext opens the socket on a thread switched into the namespace; the
// socket stays there after the thread switches back.
func (n *Netns) DialContext(ctx context.Context, name, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := vnetns.GetFromName(n.nsFor(name))
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("open namespace %s: %w", n.nsFor(name), err)}
			return
		}
		defer target.Close()
		if err := vnetns.Set(target); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if serr := vnetns.Set(orig); serr != nil {
			// Leave the thread locked: it dies with this goroutine
			// rather than run other code in the wrong namespace.
			res <- result{c: c, err: err}
			return
		}
		runtime.UnlockOSThread()
		res <- result{c: c, err: err}
	}()
	r := <-res
	return r.c, r.err
}

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

var ownedName = regexp.MustCompile(`^mlmesh-([0-9]+)-`)

// SweepStale deletes namespaces left by runs that were killed before they
// could clean up (SIGKILL): those named "mlmesh-<pid>-…" whose process is
// gone. It returns the names it deleted.
func SweepStale(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir("/var/run/netns")
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var deleted []string
	var errs []error
	for _, e := range entries {
		m := ownedName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || processExists(pid) {
			continue
		}
		if err := ip(ctx, "netns", "del", filepath.Base(e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, e.Name())
	}
	return deleted, errors.Join(errs...)
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
