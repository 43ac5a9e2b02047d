// Package iptables builds, applies, verifies and removes meshlite's traffic
// capture: the nat/mangle/raw rules and TPROXY policy routes that Istio's
// `istio-iptables` installs, with the same chain names, flags and defaults.
//
// The package is split in two halves. The plan half (config.go, plan.go,
// render.go, state.go) is pure: it turns a CaptureConfig into a Plan, and a
// saved ruleset plus a Plan into the restore input, without touching the
// system, so the same plan drives apply, dry-run, cleanup, `check` and the
// golden tests. The system half (backend.go, apply.go, routes.go,
// verify.go, validate.go, discover.go, origdst.go) reads and writes the
// calling thread's network namespace.
package iptables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Interception modes accepted by -m, as in Istio.
const (
	ModeRedirect = "REDIRECT"
	ModeTProxy   = "TPROXY"
)

// Ports and marks meshlite shares with Istio.
const (
	DefaultProxyPort          = 15001
	DefaultInboundCapturePort = 15006
	DefaultInboundTunnelPort  = 15008
	DefaultProxyUID           = "1337"
	DefaultTProxyMark         = 1337
	DefaultTProxyRouteTable   = 133
	DefaultProbePort          = 15002
	DefaultProbeTimeout       = 5 * time.Second
	DNSCapturePort            = 15053
	// outboundMark is what Istio sets on Envoy's own traffic to the pod IP
	// in TPROXY mode so that it is not captured again.
	outboundMark = 1338
)

// statusPorts are the agent and Envoy ports that are never captured inbound:
// Envoy's Prometheus port, the readiness port and the agent status port. The
// Istio injector always passes them with -d; meshlite adds them itself so a
// bare run is safe too.
var statusPorts = []uint16{15090, 15021, 15020}

// CaptureConfig is the input of the plan. Its string fields hold the raw
// comma-separated values of the matching istio-iptables flags so that
// validation errors can quote exactly what the user typed.
type CaptureConfig struct {
	ProxyPort          uint16 // -p
	InboundCapturePort uint16 // -z
	InboundTunnelPort  uint16 // -e
	ProxyUID           string // -u, comma separated numeric UIDs
	ProxyGID           string // -g, comma separated numeric GIDs; defaults to ProxyUID
	Mode               string // -m REDIRECT|TPROXY
	TProxyMark         uint32 // -t
	TProxyRouteTable   int    // -r

	InboundPortsInclude     string // -b, "*" or ports
	InboundPortsExclude     string // -d
	OutboundPortsInclude    string // -q
	OutboundPortsExclude    string // -o
	OutboundIPRangesInclude string // -i, "*" or CIDRs
	OutboundIPRangesExclude string // -x
	ExcludeInterfaces       string // -c
	KubeVirtInterfaces      string // -k

	RedirectDNS   bool
	CaptureAllDNS bool
	DropInvalid   bool
	DualStack     bool
	// EnableIPv6 installs the ip6tables half. The CLI sets it from
	// --dual-stack or from the pod's addresses (DiscoverIPv6).
	EnableIPv6 bool
	// DNSServersV4/V6 are the resolvers whose port 53 traffic is captured
	// when RedirectDNS is set without CaptureAllDNS (from /etc/resolv.conf).
	DNSServersV4 []string
	DNSServersV6 []string

	// HostIPv4LoopbackCIDR is ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR.
	HostIPv4LoopbackCIDR string

	ProbePort    uint16        // --iptables-probe-port
	ProbeTimeout time.Duration // --iptables-probe-timeout
}

// DefaultConfig returns what a sidecar gets from the Istio injector: capture
// every inbound and outbound port, REDIRECT mode, proxy UID/GID 1337.
func DefaultConfig() CaptureConfig {
	return CaptureConfig{
		ProxyPort:               DefaultProxyPort,
		InboundCapturePort:      DefaultInboundCapturePort,
		InboundTunnelPort:       DefaultInboundTunnelPort,
		ProxyUID:                DefaultProxyUID,
		Mode:                    ModeRedirect,
		TProxyMark:              DefaultTProxyMark,
		TProxyRouteTable:        DefaultTProxyRouteTable,
		InboundPortsInclude:     "*",
		OutboundIPRangesInclude: "*",
		HostIPv4LoopbackCIDR:    "127.0.0.1/32",
		ProbePort:               DefaultProbePort,
		ProbeTimeout:            DefaultProbeTimeout,
	}
}

// FieldError is an invalid input, named by the flag the user sets it with.
type FieldError struct {
	Flag   string // e.g. "-b/--istio-inbound-ports"
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s value %q: %s", e.Flag, e.Value, e.Reason)
}

// Flag names used in errors; they match the CLI in cmd/pilot-agent.
const (
	flagProxyPort   = "-p/--envoy-port"
	flagInbound     = "-z/--inbound-capture-port"
	flagTunnel      = "-e/--inbound-tunnel-port"
	flagUID         = "-u/--proxy-uid"
	flagGID         = "-g/--proxy-gid"
	flagMode        = "-m/--istio-inbound-interception-mode"
	flagMark        = "-t/--istio-inbound-tproxy-mark"
	flagTable       = "-r/--istio-inbound-tproxy-route-table"
	flagInPorts     = "-b/--istio-inbound-ports"
	flagInExclude   = "-d/--istio-local-exclude-ports"
	flagOutPorts    = "-q/--istio-outbound-ports"
	flagOutExclude  = "-o/--istio-local-outbound-ports-exclude"
	flagCIDRs       = "-i/--istio-service-cidr"
	flagCIDRExclude = "-x/--istio-service-exclude-cidr"
	flagExcludeNIC  = "-c/--istio-exclude-interfaces"
	flagKubeVirt    = "-k/--kube-virt-interfaces"
	flagLoopback    = "ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR"
	flagProbeTO     = "--iptables-probe-timeout"
	flagDNSServers  = "DNS servers (/etc/resolv.conf)"
)

// split is Istio's comma list split: empty means none, blanks are trimmed.
func split(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parsePorts(flag, s string, allowWildcard bool) (wildcard bool, ports []uint16, err error) {
	if strings.TrimSpace(s) == "*" {
		if !allowWildcard {
			return false, nil, &FieldError{flag, s, `"*" is not allowed here; list the ports`}
		}
		return true, nil, nil
	}
	seen := map[uint16]bool{}
	for _, p := range split(s) {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 {
			return false, nil, &FieldError{flag, s, fmt.Sprintf("port %q must be a number from 1 to 65535", p)}
		}
		if !seen[uint16(n)] {
			seen[uint16(n)] = true
			ports = append(ports, uint16(n))
		}
	}
	return false, ports, nil
}

func parseIDs(flag, s string) ([]string, error) {
	ids := split(s)
	for _, id := range ids {
		if n, err := strconv.ParseUint(id, 10, 32); err != nil || n > 1<<31 {
			return nil, &FieldError{flag, s, fmt.Sprintf("%q is not a numeric id; pass numbers such as 1337", id)}
		}
	}
	return ids, nil
}

func parseCIDRs(flag, s string, allowWildcard bool) (wildcard bool, v4, v6 []netip.Prefix, err error) {
	if strings.TrimSpace(s) == "*" {
		if !allowWildcard {
			return false, nil, nil, &FieldError{flag, s, `"*" would exclude all traffic; list CIDRs or leave it empty`}
		}
		return true, nil, nil, nil
	}
	for _, c := range split(s) {
		p, perr := netip.ParsePrefix(c)
		if perr != nil {
			return false, nil, nil, &FieldError{flag, s, fmt.Sprintf("%q is not a CIDR such as 10.0.0.0/8 or fd00::/8", c)}
		}
		p = p.Masked()
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return false, v4, v6, nil
}

func parseIfaces(flag, s string) ([]string, error) {
	names := split(s)
	for _, n := range names {
		// The kernel's rule (dev_valid_name), and what keeps a name from
		// splitting an iptables-restore line: no space, control character, '/' or ':'.
		if len(n) > 15 || n == "." || n == ".." || strings.ContainsFunc(n, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' || r == ':' || r > unicode.MaxASCII
		}) {
			return nil, &FieldError{flag, s, fmt.Sprintf("%q is not an interface name (at most 15 printable ASCII characters, no spaces, '/' or ':')", n)}
		}
	}
	return names, nil
}

// resolved is a validated CaptureConfig with every list parsed; the plan
// builder works only from this.
type resolved struct {
	cfg                    CaptureConfig
	uids, gids             []string
	inAll                  bool
	inPorts, inExclude     []uint16
	outPorts, outExclude   []uint16
	outAll                 bool
	inc4, inc6, exc4, exc6 []netip.Prefix
	excludeNICs, kubeVirt  []string
	loopback4              netip.Prefix
	dns4, dns6             []netip.Addr
	redirectDNS            bool
}

// Validate checks every field and returns the first problem, naming the flag
// and value, so that nothing is touched when the input is wrong.
func (c CaptureConfig) Validate() error {
	_, err := c.resolve()
	return err
}

func (c CaptureConfig) resolve() (*resolved, error) {
	r := &resolved{cfg: c}
	if c.Mode == "" {
		r.cfg.Mode = ModeRedirect
	}
	switch r.cfg.Mode {
	case ModeRedirect, ModeTProxy:
	default:
		return nil, &FieldError{flagMode, c.Mode, `must be "REDIRECT" or "TPROXY"`}
	}
	for _, p := range []struct {
		flag string
		v    uint16
	}{{flagProxyPort, c.ProxyPort}, {flagInbound, c.InboundCapturePort}, {flagTunnel, c.InboundTunnelPort}} {
		if p.v == 0 {
			return nil, &FieldError{p.flag, "0", "port must be from 1 to 65535"}
		}
	}
	if r.cfg.Mode == ModeTProxy {
		if c.TProxyMark == 0 {
			return nil, &FieldError{flagMark, "0", "mark must be a non-zero number, such as 1337"}
		}
		if c.TProxyRouteTable <= 0 || c.TProxyRouteTable >= 253 && c.TProxyRouteTable <= 255 {
			return nil, &FieldError{flagTable, strconv.Itoa(c.TProxyRouteTable), "route table must be positive and not a reserved table (253-255)"}
		}
	}
	var err error
	if r.uids, err = parseIDs(flagUID, c.ProxyUID); err != nil {
		return nil, err
	}
	if len(r.uids) == 0 {
		return nil, &FieldError{flagUID, c.ProxyUID, "at least one proxy UID is required, such as 1337"}
	}
	gid := c.ProxyGID
	if strings.TrimSpace(gid) == "" {
		gid = c.ProxyUID // Istio: the GID defaults to the UID
	}
	if r.gids, err = parseIDs(flagGID, gid); err != nil {
		return nil, err
	}
	if r.inAll, r.inPorts, err = parsePorts(flagInPorts, c.InboundPortsInclude, true); err != nil {
		return nil, err
	}
	if _, r.inExclude, err = parsePorts(flagInExclude, c.InboundPortsExclude, false); err != nil {
		return nil, err
	}
	if _, r.outPorts, err = parsePorts(flagOutPorts, c.OutboundPortsInclude, false); err != nil {
		return nil, err
	}
	if _, r.outExclude, err = parsePorts(flagOutExclude, c.OutboundPortsExclude, false); err != nil {
		return nil, err
	}
	if err := conflict(flagInPorts, flagInExclude, c.InboundPortsInclude, r.inPorts, r.inExclude); err != nil {
		return nil, err
	}
	if err := conflict(flagOutPorts, flagOutExclude, c.OutboundPortsInclude, r.outPorts, r.outExclude); err != nil {
		return nil, err
	}
	if r.outAll, r.inc4, r.inc6, err = parseCIDRs(flagCIDRs, c.OutboundIPRangesInclude, true); err != nil {
		return nil, err
	}
	if _, r.exc4, r.exc6, err = parseCIDRs(flagCIDRExclude, c.OutboundIPRangesExclude, false); err != nil {
		return nil, err
	}
	for _, inc := range append(append([]netip.Prefix{}, r.inc4...), r.inc6...) {
		for _, exc := range append(append([]netip.Prefix{}, r.exc4...), r.exc6...) {
			if inc == exc {
				return nil, &FieldError{flagCIDRExclude, c.OutboundIPRangesExclude,
					fmt.Sprintf("%s is also listed in %s; remove it from one of them", exc, flagCIDRs)}
			}
		}
	}
	if r.excludeNICs, err = parseIfaces(flagExcludeNIC, c.ExcludeInterfaces); err != nil {
		return nil, err
	}
	if r.kubeVirt, err = parseIfaces(flagKubeVirt, c.KubeVirtInterfaces); err != nil {
		return nil, err
	}
	lo := c.HostIPv4LoopbackCIDR
	if lo == "" {
		lo = "127.0.0.1/32"
	}
	if r.loopback4, err = netip.ParsePrefix(lo); err != nil || !r.loopback4.Addr().Is4() || !r.loopback4.Addr().IsLoopback() {
		return nil, &FieldError{flagLoopback, lo, "must be an IPv4 loopback CIDR within 127.0.0.0/8, such as 127.0.0.1/32"}
	}
	r.loopback4 = r.loopback4.Masked()
	if c.ProbeTimeout < 0 {
		return nil, &FieldError{flagProbeTO, c.ProbeTimeout.String(), "must be a positive duration such as 5s"}
	}
	for _, s := range append(append([]string{}, c.DNSServersV4...), c.DNSServersV6...) {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return nil, &FieldError{flagDNSServers, s, "is not an IP address; fix the nameserver line"}
		}
		if a.Unmap().Is4() {
			r.dns4 = append(r.dns4, a.Unmap())
		} else {
			r.dns6 = append(r.dns6, a)
		}
	}
	// Istio: REDIRECT_DNS without CAPTURE_ALL_DNS and without any resolver
	// captures nothing.
	r.redirectDNS = c.RedirectDNS && (c.CaptureAllDNS || len(r.dns4)+len(r.dns6) > 0)
	r.inExclude = withStatusPorts(r.inExclude, r.cfg)
	return r, nil
}

// withStatusPorts appends the status ports (and in TPROXY mode the tunnel
// port, which the nat-only Istio rule does not cover) to the inbound
// exclusions when they are not already listed.
func withStatusPorts(ex []uint16, c CaptureConfig) []uint16 {
	add := append([]uint16{}, statusPorts...)
	if c.Mode == ModeTProxy {
		add = append(add, c.InboundTunnelPort)
	}
	for _, p := range add {
		found := false
		for _, e := range ex {
			found = found || e == p
		}
		if !found {
			ex = append(ex, p)
		}
	}
	return ex
}

func conflict(incFlag, excFlag, incRaw string, inc, exc []uint16) error {
	for _, i := range inc {
		for _, e := range exc {
			if i == e {
				return &FieldError{excFlag, strconv.Itoa(int(e)),
					fmt.Sprintf("port %d is both included by %s=%q and excluded; remove it from one of them", e, incFlag, incRaw)}
			}
		}
	}
	return nil
}
