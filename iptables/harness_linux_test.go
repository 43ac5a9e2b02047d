package iptables

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/test/netns"
)

// Addresses exist only inside the namespaces the tests create.
const (
	podV4, peerV4   = "10.77.0.1", "10.77.0.2"
	podV6, peerV6   = "fd77::1", "fd77::2"
	farV4, farV6    = "10.78.0.2", "fd78::2" // a second peer network behind peerV4/peerV6
	appUID, appGID  = 1000, 1000
	proxyID         = 1337
	dialTimeout     = 3 * time.Second
	appPort         = 8080
	bannerSeparator = " "
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// env is a pod namespace (where capture is installed) wired by a veth to a
// peer namespace, with a second network routed behind the peer.
type env struct {
	pod, peer *netns.NS
}

func newEnv(t *testing.T) *env {
	t.Helper()
	netns.RequireRoot(t, "ip", "iptables-nft-restore", "iptables-legacy-restore", "ip6tables-nft-restore", "ip6tables-legacy-restore")
	e := &env{pod: netns.New(t), peer: netns.New(t)}
	netns.Veth(t, e.pod, "eth0", []string{podV4 + "/24", podV6 + "/64"},
		e.peer, "eth0", []string{peerV4 + "/24", peerV6 + "/64", farV4 + "/24", farV6 + "/64"})
	e.pod.MustExec(t, "ip", "route", "add", "10.78.0.0/24", "via", peerV4)
	e.pod.MustExec(t, "ip", "-6", "route", "add", "fd78::/64", "via", peerV6)
	return e
}

func (e *env) install(t *testing.T, cfg CaptureConfig, opts ...Option) Result {
	t.Helper()
	var res Result
	err := e.pod.Do(func() error {
		var err error
		res, err = Install(context.Background(), cfg, append([]Option{WithLogger(testLogger(t))}, opts...)...)
		return err
	})
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	return res
}

func (e *env) cleanup(t *testing.T, cfg CaptureConfig, opts ...Option) Result {
	t.Helper()
	var res Result
	err := e.pod.Do(func() error {
		var err error
		res, err = Cleanup(context.Background(), cfg, append([]Option{WithLogger(testLogger(t))}, opts...)...)
		return err
	})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	return res
}

// serve answers every connection with "<name> <original-dst> <local-addr>",
// so a client learns which listener got it and where it was going.
func serve(t *testing.T, l net.Listener, name string) {
	t.Helper()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			od := "-"
			if a, err := OriginalDestination(c); err == nil {
				od = a.String()
			}
			fmt.Fprintf(c, "%s %s %s\n", name, od, c.LocalAddr())
			c.Close()
		}
	}()
}

// servePacket answers every datagram with its name.
func servePacket(t *testing.T, pc net.PacketConn, name string) {
	t.Helper()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	}()
}

type answer struct {
	name, origDst, local string
}

// dial connects from ns as uid/gid and reads the banner.
func dial(t *testing.T, ns *netns.NS, uid, gid int, addr string) answer {
	t.Helper()
	network := "tcp4"
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is6() {
		network = "tcp6"
	}
	c, err := ns.DialAs(uid, gid, network, addr, dialTimeout)
	if err != nil {
		t.Fatalf("dial %s as %d:%d from %s: %v", addr, uid, gid, ns.Name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading banner from %s: %v", addr, err)
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		t.Fatalf("bad banner %q", line)
	}
	return answer{f[0], f[1], f[2]}
}

// query sends one UDP datagram from ns as uid/gid and returns the reply.
func query(t *testing.T, ns *netns.NS, uid, gid int, network, addr string) string {
	t.Helper()
	c, err := ns.DialAs(uid, gid, network, addr, dialTimeout)
	if err != nil {
		t.Fatalf("dial udp %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := c.Write([]byte("q")); err != nil {
		t.Fatalf("udp write %s: %v", addr, err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp read from %s: %v", addr, err)
	}
	return string(buf[:n])
}

func hostport(h string, p int) string { return net.JoinHostPort(h, fmt.Sprint(p)) }

// listen starts a banner server in ns.
func listen(t *testing.T, ns *netns.NS, network, addr, name string) {
	t.Helper()
	serve(t, ns.Listen(t, network, addr, nil), name)
}

// snapshot is the namespace state the system-touching tests compare: both
// backends' rulesets, ip rules and routes of both families, and lo addresses.
func (e *env) snapshot(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	for _, cmd := range [][]string{
		{"iptables-nft-save"}, {"ip6tables-nft-save"},
		{"ip", "-4", "rule"}, {"ip", "-6", "rule"},
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
		{"ip", "addr", "show", "lo"},
	} {
		out := e.pod.MustExec(t, cmd[0], cmd[1:]...)
		fmt.Fprintf(&sb, "## %s\n%s", strings.Join(cmd, " "), stripSaveComments(out))
	}
	// Legacy only when its tables exist, so the snapshot never creates one.
	var legacy4, legacy6 bool
	_ = e.pod.Do(func() error { legacy4, legacy6 = legacyTablesExist(IPv4), legacyTablesExist(IPv6); return nil })
	if legacy4 {
		fmt.Fprintf(&sb, "## iptables-legacy-save\n%s", stripSaveComments(e.pod.MustExec(t, "iptables-legacy-save")))
	}
	if legacy6 {
		fmt.Fprintf(&sb, "## ip6tables-legacy-save\n%s", stripSaveComments(e.pod.MustExec(t, "ip6tables-legacy-save")))
	}
	return sb.String()
}

// stripSaveComments drops the "# Generated ... on <date>" lines, counters,
// and tables that hold nothing (only built-in chains with policy ACCEPT): an
// emptied legacy table cannot be unloaded from a namespace and has no effect.
func stripSaveComments(s string) string {
	var out, block []string
	empty := true
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "*") {
			block, empty = []string{l}, true
			continue
		}
		if block != nil {
			if strings.HasPrefix(l, ":") {
				if i := strings.LastIndex(l, " ["); i > 0 {
					l = l[:i]
				}
				if !strings.HasSuffix(l, " ACCEPT") {
					empty = false
				}
			} else if l != "COMMIT" {
				empty = false
			}
			block = append(block, l)
			if l == "COMMIT" {
				if !empty {
					out = append(out, block...)
				}
				block = nil
			}
			continue
		}
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, ":") {
			if i := strings.LastIndex(l, " ["); i > 0 {
				l = l[:i]
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func lookPathOrSkip(bin string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("skipping: %s not installed", bin)
	}
	return p, nil
}

func itoa(n int) string { return strconv.Itoa(n) }
