// Package netns is a test helper that creates throwaway network namespaces
// and veth pairs and runs code inside them, so that tests can install real
// iptables rules and send real packets without ever touching the host
// namespace. Every namespace is registered for removal with t.Cleanup, so it
// is deleted even when the test fails.
//
// Code runs in a namespace on a goroutine locked to its OS thread. Sockets
// created there stay in that namespace, so a listener created in Do can be
// served from any goroutine afterwards; child processes started inside Do
// inherit the namespace.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a named network namespace (visible in `ip netns list` while it
// exists).
type NS struct {
	Name   string
	handle vnetns.NsHandle
	closed bool
}

// RequireRoot skips the test, with the reason, unless it runs as root with the
// listed tools on PATH.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run the tests as root, e.g. in the CI container)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed (apt-get install -y iptables iproute2)", tool)
		}
	}
}

// New creates a fresh namespace with lo up and removes it when the test ends.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "mltest-" + hex.EncodeToString(b[:])

	runtime.LockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("netns: reading current namespace: %v", err)
	}
	h, err := vnetns.NewNamed(name) // switches this thread into it
	if serr := vnetns.Set(orig); serr != nil {
		// Never hand a thread in the wrong namespace back to the
		// scheduler: leave it locked so it dies with the goroutine.
		t.Fatalf("netns: could not return to the original namespace: %v", serr)
	}
	orig.Close()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatalf("netns: creating %s: %v", name, err)
	}
	n := &NS{Name: name, handle: h}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("netns: %v", err)
		}
	})
	nl := n.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("netns: lo in %s: %v", name, err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatalf("netns: lo up in %s: %v", name, err)
	}
	return n
}

// Close deletes the namespace now (benchmarks use it to avoid piling up
// namespaces); it is also registered with t.Cleanup, and is idempotent.
func (n *NS) Close() error {
	if n.closed {
		return nil
	}
	n.closed = true
	n.handle.Close()
	if err := vnetns.DeleteNamed(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting %s: %w", n.Name, err)
	}
	return nil
}

// Netlink returns a netlink handle bound to the namespace (no thread switch).
func (n *NS) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.handle)
	if err != nil {
		t.Fatalf("netns: netlink handle for %s: %v", n.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Do runs fn on an OS thread switched into the namespace, then switches back.
// Goroutines started by fn do not inherit the namespace.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: reading current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := vnetns.Set(n.handle); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: entering %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			// Stay locked: the thread exits with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netns: leaving %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Exec runs a command inside the namespace and returns its combined output.
func (n *NS) Exec(ctx context.Context, name string, args ...string) (string, error) {
	var out []byte
	err := n.Do(func() error {
		var err error
		out, err = exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, out)
		}
		return nil
	})
	return string(out), err
}

// MustExec is Exec that fails the test on error.
func (n *NS) MustExec(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := n.Exec(ctx, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Veth connects two namespaces with a veth pair, assigns the given CIDR
// addresses (IPv4 or IPv6, e.g. "10.77.0.1/24", "fd77::1/64") and brings both
// ends up. IPv6 addresses skip duplicate address detection so they are usable
// at once.
func Veth(t testing.TB, a *NS, aName string, aAddrs []string, b *NS, bName string, bAddrs []string) {
	t.Helper()
	ha, hb := a.Netlink(t), b.Netlink(t)
	// The peer is created under a temporary name so that both ends may
	// share a name (eth0 on each side), then renamed once moved.
	var r [3]byte
	_, _ = rand.Read(r[:])
	tmp := "mlv" + hex.EncodeToString(r[:])
	la := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: tmp}
	if err := ha.LinkAdd(la); err != nil {
		t.Fatalf("netns: creating veth %s/%s in %s: %v", aName, bName, a.Name, err)
	}
	peer, err := ha.LinkByName(tmp)
	if err != nil {
		t.Fatalf("netns: finding %s: %v", tmp, err)
	}
	if err := ha.LinkSetNsFd(peer, int(b.handle)); err != nil {
		t.Fatalf("netns: moving %s to %s: %v", bName, b.Name, err)
	}
	if peer, err = hb.LinkByName(tmp); err != nil {
		t.Fatalf("netns: finding %s in %s: %v", tmp, b.Name, err)
	}
	if err := hb.LinkSetName(peer, bName); err != nil {
		t.Fatalf("netns: renaming %s to %s in %s: %v", tmp, bName, b.Name, err)
	}
	setup := func(h *netlink.Handle, ns *NS, name string, addrs []string) {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("netns: %s in %s: %v", name, ns.Name, err)
		}
		for _, s := range addrs {
			addr, err := netlink.ParseAddr(s)
			if err != nil {
				t.Fatalf("netns: bad address %q: %v", s, err)
			}
			if addr.IP.To4() == nil {
				addr.Flags |= unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(l, addr); err != nil {
				t.Fatalf("netns: adding %s to %s in %s: %v", s, name, ns.Name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("netns: %s up in %s: %v", name, ns.Name, err)
		}
	}
	setup(ha, a, aName, aAddrs)
	setup(hb, b, bName, bAddrs)
}

// Listen opens a TCP listener inside the namespace. addr is host:port.
func (n *NS) Listen(t testing.TB, network, addr string, lc *net.ListenConfig) net.Listener {
	t.Helper()
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = lc.Listen(context.Background(), network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("netns: listen %s %s in %s: %v", network, addr, n.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ListenPacket opens a UDP socket inside the namespace.
func (n *NS) ListenPacket(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	return n.ListenPacketAs(t, 0, 0, network, addr)
}

// ListenPacketAs opens a UDP socket inside the namespace owned by uid/gid,
// as the agent's DNS proxy socket is owned by the proxy user.
func (n *NS) ListenPacketAs(t testing.TB, uid, gid int, network, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	err := n.Do(func() error {
		return AsOwner(uid, gid, func() error {
			var err error
			pc, err = net.ListenPacket(network, addr)
			return err
		})
	})
	if err != nil {
		t.Fatalf("netns: listen %s %s in %s: %v", network, addr, n.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// DialAs connects from inside the namespace with a socket owned by uid/gid,
// which is what iptables' owner match sees. The process stays root: only the
// dialling thread's filesystem uid/gid are switched while the socket is
// created (setfsuid is per thread), then restored.
func (n *NS) DialAs(uid, gid int, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		return AsOwner(uid, gid, func() error {
			var err error
			c, err = net.DialTimeout(network, addr, timeout)
			return err
		})
	})
	return c, err
}

// AsOwner runs fn with the calling thread's fsuid/fsgid set to uid/gid. The
// caller must be on a locked OS thread (inside Do).
func AsOwner(uid, gid int, fn func() error) error {
	// setfsuid is a plain per-thread syscall (unlike syscall.Setuid, which
	// Go applies to every thread); it returns the previous value.
	prevGID, err := unix.SetfsgidRetGid(gid)
	if err != nil {
		return fmt.Errorf("setfsgid(%d): %w", gid, err)
	}
	prevUID, err := unix.SetfsuidRetUid(uid)
	if err != nil {
		_, _ = unix.SetfsgidRetGid(prevGID)
		return fmt.Errorf("setfsuid(%d): %w", uid, err)
	}
	defer func() {
		_, _ = unix.SetfsuidRetUid(prevUID)
		_, _ = unix.SetfsgidRetGid(prevGID)
	}()
	return fn()
}
