package iptables

import (
	"context"

	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ValidationError is a failed --run-validation, with the diagnosis: which
// rule, chain or backend is missing or wrong.
type ValidationError struct {
	Reason    string
	Diagnosis []string
}

func (e *ValidationError) Error() string {
	if len(e.Diagnosis) == 0 {
		return "capture validation failed: " + e.Reason
	}
	return "capture validation failed: " + e.Reason + "\n  - " + strings.Join(e.Diagnosis, "\n  - ")
}

// ValidationExitCode is the exit status Istio's validation uses.
const ValidationExitCode = 126

// Validate proves that capture works in the calling thread's network
// namespace, as Istio's istio-validation init container does: it listens on
// the proxy ports on loopback, connects as the proxy UID/GID from loopback to
// 127.0.0.6:<probe port> (::6 for IPv6), which only the installed rules can
// turn into a connection to the inbound port, and checks the original
// destination. On failure it explains why; it also fails when another
// backend's rules can shadow ours.
func Validate(ctx context.Context, cfg CaptureConfig, opts ...Option) error {
	o := buildOptions(opts)
	p, err := Build(cfg)
	if err != nil {
		return err
	}
	c := p.Config
	timeout := c.ProbeTimeout
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	probePort := c.ProbePort
	if probePort == 0 {
		probePort = DefaultProbePort
	}
	runtime.LockOSThread() // keep sockets and the fsuid switch in this namespace/thread
	defer runtime.UnlockOSThread()

	for _, fp := range p.Families {
		listenIP, probeIP, srcIP := "127.0.0.1", "127.0.0.6", "127.0.0.1"
		if fp.Family == IPv6 {
			listenIP, probeIP, srcIP = "::1", "::6", "::1"
		}
		want := netip.AddrPortFrom(netip.MustParseAddr(probeIP), probePort)
		got, where, err := probe(ctx, c, listenIP, srcIP, want, timeout)
		if err != nil {
			return err
		}
		if where != strconv.Itoa(int(c.InboundCapturePort)) || got != want {
			reason := fmt.Sprintf("%s probe to %s was not redirected to the inbound port %d", fp.Family, want, c.InboundCapturePort)
			if where != "" {
				reason = fmt.Sprintf("%s probe to %s reached port %s with original destination %s, want port %d with %s",
					fp.Family, want, where, got, c.InboundCapturePort, want)
			}
			return &ValidationError{Reason: reason, Diagnosis: diagnose(ctx, p, fp.Family, o)}
		}
		o.logger.Info("capture validated", "family", fp.Family.String(), "probe", want.String())
	}
	// The probe can pass while the other backend still rewrites traffic
	// that the probe does not exercise.
	var shadow []string
	for _, fp := range p.Families {
		shadow = append(shadow, shadowing(ctx, fp.Family, o)...)
	}
	if len(shadow) > 0 {
		return &ValidationError{Reason: "another iptables backend has rules that are evaluated alongside meshlite's", Diagnosis: shadow}
	}
	return nil
}

// probe serves the two proxy ports and dials the probe address until a
// connection is accepted or the timeout passes. It returns the original
// destination and the port that accepted it.
func probe(ctx context.Context, c CaptureConfig, listenIP, srcIP string, want netip.AddrPort, timeout time.Duration) (netip.AddrPort, string, error) {
	type hit struct {
		port string
		dst  netip.AddrPort
	}
	hits := make(chan hit, 4)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, port := range []uint16{c.InboundCapturePort, c.ProxyPort} {
		l, err := net.Listen("tcp", net.JoinHostPort(listenIP, strconv.Itoa(int(port))))
		if err != nil {
			return netip.AddrPort{}, "", fmt.Errorf("validation needs port %d free on %s (stop the proxy before validating): %w", port, listenIP, err)
		}
		listeners = append(listeners, l)
		go func(l net.Listener, port string) {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				dst, _ := OriginalDestination(conn)
				conn.Close()
				hits <- hit{port, dst}
			}
		}(l, strconv.Itoa(int(port)))
	}
	uid, _ := strconv.Atoi(strings.Split(c.ProxyUID, ",")[0])
	gidList := c.ProxyGID
	if gidList == "" {
		gidList = c.ProxyUID
	}
	gid, _ := strconv.Atoi(strings.Split(gidList, ",")[0])
	if os.Geteuid() != 0 && os.Geteuid() != uid {
		return netip.AddrPort{}, "", fmt.Errorf("validation must run as root or as the proxy UID %d (running as %d)", uid, os.Geteuid())
	}
	deadline := time.Now().Add(timeout)
	src := &net.TCPAddr{IP: net.ParseIP(srcIP)}
	for {
		d := net.Dialer{LocalAddr: src, Timeout: min(time.Second, time.Until(deadline))}
		var conn net.Conn
		err := asOwner(uid, gid, func() error {
			var err error
			conn, err = d.DialContext(ctx, "tcp", want.String())
			return err
		})
		if err == nil {
			conn.Close()
			select {
			case h := <-hits:
				return h.dst, h.port, nil
			case <-time.After(time.Until(deadline)):
			}
		}
		if ctx.Err() != nil {
			return netip.AddrPort{}, "", ctx.Err()
		}
		if time.Now().After(deadline) {
			return netip.AddrPort{}, "", nil
		}
		// Connection refused means nothing redirected it: rules may still
		// be arriving (another init step), so poll briefly.
		select {
		case <-ctx.Done():
			return netip.AddrPort{}, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// asOwner creates sockets as uid/gid by switching the calling (locked)
// thread's fsuid/fsgid, which is what the owner match reads.
func asOwner(uid, gid int, fn func() error) error {
	if os.Geteuid() != 0 {
		return fn()
	}
	prevGID, err := unix.SetfsgidRetGid(gid)
	if err != nil {
		return err
	}
	prevUID, err := unix.SetfsuidRetUid(uid)
	if err != nil {
		_, _ = unix.SetfsgidRetGid(prevGID)
		return err
	}
	defer func() {
		_, _ = unix.SetfsuidRetUid(prevUID)
		_, _ = unix.SetfsgidRetGid(prevGID)
	}()
	return fn()
}

// diagnose explains a failed probe: which backend holds the rules, what is
// missing or different from the plan, and what the other backend holds.
func diagnose(ctx context.Context, p Plan, f Family, o options) []string {
	var out []string
	det, err := detect(ctx, f, o.backend)
	if err != nil {
		return []string{"cannot read the ruleset: " + err.Error()}
	}
	out = append(out, fmt.Sprintf("%s backend in use: %s (%s)", f, det.backend, det.reason))
	for _, fp := range p.Families {
		if fp.Family != f {
			continue
		}
		problems, err := verifyFamily(fp, det, o)
		if err != nil {
			out = append(out, "cannot list the rules: "+err.Error())
		}
		out = append(out, problems...)
	}
	if len(out) == 1 {
		out = append(out, "the "+string(det.backend)+" rules match the plan")
	}
	out = append(out, shadowing(ctx, f, o)...)
	if f == IPv6 {
		out = append(out, "IPv6 needs ::6/128 on lo (added by apply); check `ip -6 addr show lo`")
	}
	return out
}

// shadowing lists the other backend's nat and mangle rules: the kernel runs
// both variants' hooks, so they can NAT or mark packets before ours do.
func shadowing(ctx context.Context, f Family, o options) []string {
	det, err := detect(ctx, f, o.backend)
	if err != nil || det.other == nil {
		return nil
	}
	other := det.backend.other()
	var out []string
	for _, table := range []string{"nat", "mangle", "raw"} {
		t := det.other[table]
		if t == nil {
			continue
		}
		for _, chain := range t.chains {
			for _, s := range t.rules[chain] {
				out = append(out, fmt.Sprintf("%s %s rule shadows capture: -t %s -A %s %s (remove it, or force the backend with --force-iptables-binary)",
					f, other, table, chain, s))
			}
		}
	}
	return out
}
