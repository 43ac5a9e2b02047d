package iptables

import (
	"fmt"
	"net/netip"
	"strings"
)

// Chains meshlite owns. They carry Istio's names so that tools and runbooks
// written for Istio work unchanged.
const (
	ChainInbound    = "ISTIO_INBOUND"
	ChainRedirect   = "ISTIO_REDIRECT"
	ChainInRedirect = "ISTIO_IN_REDIRECT"
	ChainOutput     = "ISTIO_OUTPUT"
	ChainOutputDNS  = "ISTIO_OUTPUT_DNS"
	ChainDivert     = "ISTIO_DIVERT"
	ChainTProxy     = "ISTIO_TPROXY"
	ChainDrop       = "ISTIO_DROP"
)

// OwnedChains lists every chain name meshlite may create; cleanup and
// convergence remove any of them that the current plan does not use.
var OwnedChains = []string{ChainInbound, ChainRedirect, ChainInRedirect, ChainOutput, ChainOutputDNS, ChainDivert, ChainTProxy, ChainDrop}

// Marker is the comment meshlite puts on every rule it adds to a built-in
// chain (PREROUTING, OUTPUT). Rules in the ISTIO_* chains need no marker
// because the whole chain is ours; the marker is what lets cleanup and
// convergence remove exactly our rules from shared chains and nothing else.
const Marker = "meshlite"

// Tables in the order they are applied.
var tableOrder = []string{"raw", "mangle", "nat"}

var builtinChains = map[string][]string{
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":    {"PREROUTING", "OUTPUT"},
}

func isBuiltin(chain string) bool {
	switch chain {
	case "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING":
		return true
	}
	return false
}

// Family is an IP family.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// Rule is one rule in the canonical form iptables-save prints it, without the
// leading "-A CHAIN". Writing the plan in canonical form lets apply compare
// the desired and installed rule sets as plain strings.
type Rule struct {
	Chain string
	Spec  string
}

func (r Rule) String() string { return "-A " + r.Chain + " " + r.Spec }

// Table is the desired content of one table for one family: the chains
// meshlite owns (all their rules) and meshlite's marked rules in built-in
// chains.
type Table struct {
	Name   string
	Chains []string // owned chains, in creation order
	Rules  []Rule   // in final order within each chain
}

// ChainRules returns the rules of one chain in order.
func (t Table) ChainRules(chain string) []string {
	var out []string
	for _, r := range t.Rules {
		if r.Chain == chain {
			out = append(out, r.Spec)
		}
	}
	return out
}

// FamilyPlan is the iptables part of the plan for one family.
type FamilyPlan struct {
	Family Family
	Tables []Table
}

// Table returns the named table, or false when the plan does not use it.
func (fp FamilyPlan) Table(name string) (Table, bool) {
	for _, t := range fp.Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// RoutePlan is the policy routing TPROXY needs, per family: `ip rule add
// fwmark <Mark> lookup <Table>` and `ip route add local default dev lo table
// <Table>`.
type RoutePlan struct {
	Family Family
	Mark   uint32
	Table  int
}

// Plan is everything capture installs. It is a value: building it has no
// side effects.
type Plan struct {
	Config   CaptureConfig
	Families []FamilyPlan
	Routes   []RoutePlan
	// LoopbackIPv6 is true when ::6/128 must exist on lo (IPv6 enabled):
	// Envoy binds it as the source of inbound passthrough traffic.
	LoopbackIPv6 bool
}

// RuleCount is the number of rules (not chains) across families and tables.
func (p Plan) RuleCount() int {
	n := 0
	for _, f := range p.Families {
		for _, t := range f.Tables {
			n += len(t.Rules)
		}
	}
	return n
}

// Build validates cfg and returns the plan. It has no side effects.
func Build(cfg CaptureConfig) (Plan, error) {
	r, err := cfg.resolve()
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Config: r.cfg}
	fams := []Family{IPv4}
	if r.cfg.EnableIPv6 || r.cfg.DualStack {
		fams = append(fams, IPv6)
		p.LoopbackIPv6 = true
	}
	for _, f := range fams {
		p.Families = append(p.Families, buildFamily(r, f))
		if r.cfg.Mode == ModeTProxy && (r.inAll || len(r.inPorts) > 0) {
			p.Routes = append(p.Routes, RoutePlan{Family: f, Mark: r.cfg.TProxyMark, Table: r.cfg.TProxyRouteTable})
		}
	}
	return p, nil
}

// builder collects rules per table and chain, supporting Istio's inserts at
// a position, and remembers chain creation order.
type builder struct {
	chains map[string][]string            // table -> owned chains in order
	rules  map[string]map[string][]string // table -> chain -> specs
}

func newBuilder() *builder {
	return &builder{chains: map[string][]string{}, rules: map[string]map[string][]string{}}
}

func (b *builder) touch(table, chain string) {
	if b.rules[table] == nil {
		b.rules[table] = map[string][]string{}
	}
	if isBuiltin(chain) {
		return
	}
	for _, c := range b.chains[table] {
		if c == chain {
			return
		}
	}
	b.chains[table] = append(b.chains[table], chain)
}

// spec joins match and target, adding the marker comment in built-in chains.
func spec(chain, match, target string) string {
	parts := make([]string, 0, 3)
	if match != "" {
		parts = append(parts, match)
	}
	if isBuiltin(chain) {
		parts = append(parts, "-m comment --comment "+Marker)
	}
	parts = append(parts, "-j "+target)
	return strings.Join(parts, " ")
}

func (b *builder) add(table, chain, match, target string) {
	b.touch(table, chain)
	b.rules[table][chain] = append(b.rules[table][chain], spec(chain, match, target))
}

// insert places a rule at 1-based position pos of the chain, as `-I` does.
func (b *builder) insert(table, chain string, pos int, match, target string) {
	b.touch(table, chain)
	cur := b.rules[table][chain]
	i := min(pos-1, len(cur))
	cur = append(cur[:i], append([]string{spec(chain, match, target)}, cur[i:]...)...)
	b.rules[table][chain] = cur
}

// chain makes sure an owned chain exists even if it stays empty.
func (b *builder) chain(table, chain string) { b.touch(table, chain) }

func (b *builder) tables() []Table {
	var out []Table
	for _, name := range tableOrder {
		chains, ok := b.rules[name]
		if !ok {
			continue
		}
		t := Table{Name: name, Chains: b.chains[name]}
		// Built-in chains first in kernel order, then owned chains in
		// creation order: the same grouping iptables-save prints.
		for _, c := range append(append([]string{}, builtinChains[name]...), b.chains[name]...) {
			for _, s := range chains[c] {
				t.Rules = append(t.Rules, Rule{Chain: c, Spec: s})
			}
		}
		out = append(out, t)
	}
	return out
}

func hexMark(m uint32) string { return fmt.Sprintf("0x%x", m) }

func hostPrefix(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// buildFamily follows the rule order of Istio's capture (tools/istio-iptables
// run.go), written in canonical iptables-save form.
func buildFamily(r *resolved, f Family) FamilyPlan {
	c := r.cfg
	b := newBuilder()
	lo := r.loopback4.String()
	local6 := "127.0.0.6/32" // Envoy's inbound passthrough source address
	anyIP := "0.0.0.0"
	inc, exc := r.inc4, r.exc4
	dns := r.dns4
	if f == IPv6 {
		lo, local6, anyIP = "::1/128", "::6/128", "::"
		inc, exc, dns = r.inc6, r.exc6, r.dns6
	}
	tproxy := c.Mode == ModeTProxy
	mark := hexMark(c.TProxyMark)
	markMask := fmt.Sprintf("%s/0xffffffff", mark)
	outMark := fmt.Sprintf("0x%x/0xffffffff", outboundMark)

	// Chains are declared up front in Istio's order so that empty ones
	// (such as ISTIO_OUTPUT_DNS without resolvers) still exist.
	for _, ch := range []string{ChainInbound, ChainRedirect, ChainInRedirect, ChainOutput} {
		b.chain("nat", ch)
	}
	if tproxy {
		for _, ch := range []string{ChainDivert, ChainTProxy, ChainInbound} {
			b.chain("mangle", ch)
		}
	}

	for _, nic := range r.excludeNICs {
		b.add("nat", "PREROUTING", "-i "+nic, "RETURN")
		b.add("nat", "OUTPUT", "-o "+nic, "RETURN")
	}
	if tproxy {
		for _, nic := range r.excludeNICs {
			b.add("mangle", "PREROUTING", "-i "+nic, "RETURN")
			b.add("mangle", "OUTPUT", "-o "+nic, "RETURN")
		}
	}
	for _, nic := range r.kubeVirt {
		b.insert("nat", "PREROUTING", 1, "-i "+nic, "RETURN")
	}
	if c.DropInvalid {
		b.add("mangle", "PREROUTING", "-m conntrack --ctstate INVALID", ChainDrop)
		b.add("mangle", ChainDrop, "", "DROP")
	}

	b.add("nat", ChainInbound, fmt.Sprintf("-p tcp -m tcp --dport %d", c.InboundTunnelPort), "RETURN")
	b.add("nat", ChainRedirect, "-p tcp", fmt.Sprintf("REDIRECT --to-ports %d", c.ProxyPort))
	b.add("nat", ChainInRedirect, "-p tcp", fmt.Sprintf("REDIRECT --to-ports %d", c.InboundCapturePort))

	// Inbound.
	if r.inAll || len(r.inPorts) > 0 {
		table := "nat"
		if tproxy {
			table = "mangle"
			b.add("mangle", ChainDivert, "", "MARK --set-xmark "+markMask)
			b.add("mangle", ChainDivert, "", "ACCEPT")
			b.add("mangle", ChainTProxy, "! -d "+lo+" -p tcp",
				fmt.Sprintf("TPROXY --on-port %d --on-ip %s --tproxy-mark %s", c.InboundCapturePort, anyIP, markMask))
		}
		b.add(table, "PREROUTING", "-p tcp", ChainInbound)
		if r.inAll {
			for _, p := range r.inExclude {
				b.add(table, ChainInbound, fmt.Sprintf("-p tcp -m tcp --dport %d", p), "RETURN")
			}
			if tproxy {
				b.add("mangle", ChainInbound, "-p tcp -m conntrack --ctstate RELATED,ESTABLISHED", ChainDivert)
				b.add("mangle", ChainInbound, "-p tcp", ChainTProxy)
			} else {
				b.add("nat", ChainInbound, "-p tcp", ChainInRedirect)
			}
		} else {
			for _, p := range r.inPorts {
				if tproxy {
					b.add("mangle", ChainInbound, fmt.Sprintf("-p tcp -m tcp --dport %d -m conntrack --ctstate RELATED,ESTABLISHED", p), ChainDivert)
					b.add("mangle", ChainInbound, fmt.Sprintf("-p tcp -m tcp --dport %d", p), ChainTProxy)
				} else {
					b.add("nat", ChainInbound, fmt.Sprintf("-p tcp -m tcp --dport %d", p), ChainInRedirect)
				}
			}
		}
	}

	// Outbound.
	b.add("nat", "OUTPUT", "", ChainOutput)
	for _, p := range r.outExclude {
		b.add("nat", ChainOutput, fmt.Sprintf("-p tcp -m tcp --dport %d", p), "RETURN")
		b.add("nat", ChainOutput, fmt.Sprintf("-p udp -m udp --dport %d", p), "RETURN")
	}
	b.add("nat", ChainOutput, "-s "+local6+" -o lo", "RETURN")
	hasLoopbackInclude := false
	for _, p := range append(append([]netip.Prefix{}, r.inc4...), r.inc6...) {
		hasLoopbackInclude = hasLoopbackInclude || p.Addr().IsLoopback()
	}
	for _, kind := range []string{"uid", "gid"} {
		ids := r.uids
		if kind == "gid" {
			ids = r.gids
		}
		for _, id := range ids {
			owner := fmt.Sprintf("-m owner --%s-owner %s", kind, id)
			notOwner := fmt.Sprintf("-m owner ! --%s-owner %s", kind, id)
			// App -> service VIP -> Envoy outbound -> pod IP comes back
			// through Envoy inbound.
			if r.redirectDNS && kind == "uid" {
				b.add("nat", ChainOutput, fmt.Sprintf("! -d %s -o lo -p tcp -m multiport ! --dports 53,%d %s", lo, c.InboundTunnelPort, owner), ChainInRedirect)
			} else {
				b.add("nat", ChainOutput, fmt.Sprintf("! -d %s -o lo -p tcp -m tcp ! --dport %d %s", lo, c.InboundTunnelPort, owner), ChainInRedirect)
			}
			// App -> its own pod IP over lo is not captured, unless the
			// user explicitly included loopback.
			if !hasLoopbackInclude {
				if r.redirectDNS {
					b.add("nat", ChainOutput, "-o lo -p tcp -m tcp ! --dport 53 "+notOwner, "RETURN")
				} else {
					b.add("nat", ChainOutput, "-o lo "+notOwner, "RETURN")
				}
			}
			// The proxy's own traffic is never captured (no loops).
			b.add("nat", ChainOutput, owner, "RETURN")
		}
	}
	if r.redirectDNS {
		buildDNS(b, r, dns)
	}
	b.add("nat", ChainOutput, "-d "+lo, "RETURN")
	for _, p := range exc {
		b.add("nat", ChainOutput, "-d "+p.String(), "RETURN")
	}
	for _, p := range r.outPorts {
		b.add("nat", ChainOutput, fmt.Sprintf("-p tcp -m tcp --dport %d", p), ChainRedirect)
	}
	if r.outAll {
		b.add("nat", ChainOutput, "", ChainRedirect)
		for _, nic := range r.kubeVirt {
			b.insert("nat", "PREROUTING", 1, "-i "+nic, ChainRedirect)
		}
	} else {
		for _, p := range inc {
			for _, nic := range r.kubeVirt {
				b.insert("nat", "PREROUTING", 1, "-d "+p.String()+" -i "+nic, ChainRedirect)
			}
			b.add("nat", ChainOutput, "-d "+p.String(), ChainRedirect)
		}
	}

	if tproxy {
		// Keep the mark set by Envoy's original_src on the connection, and
		// keep Envoy -> app traffic (mark 1338) out of the inbound capture.
		b.add("mangle", "PREROUTING", "-p tcp -m mark --mark "+mark, "CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff")
		b.add("mangle", "OUTPUT", "-o lo -p tcp -m mark --mark "+mark, "RETURN")
		for _, kind := range []string{"uid", "gid"} {
			ids := r.uids
			if kind == "gid" {
				ids = r.gids
			}
			for _, id := range ids {
				b.add("mangle", "OUTPUT", fmt.Sprintf("! -d %s -o lo -p tcp -m owner --%s-owner %s", lo, kind, id), "MARK --set-xmark "+outMark)
			}
		}
		b.add("mangle", "OUTPUT", "-p tcp -m connmark --mark "+mark, "CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff")
		b.insert("mangle", ChainInbound, 1, "-p tcp -m mark --mark "+mark, "RETURN")
		b.insert("mangle", ChainInbound, 2, "-s "+local6+" -i lo -p tcp", "RETURN")
		b.insert("mangle", ChainInbound, 3, fmt.Sprintf("-i lo -p tcp -m mark ! --mark 0x%x", outboundMark), "RETURN")
	}
	return FamilyPlan{Family: f, Tables: b.tables()}
}

// buildDNS sends port 53 to the agent's DNS proxy (15053), and splits the
// proxy's upstream and client UDP flows into separate conntrack zones as
// Istio does to avoid conntrack races.
func buildDNS(b *builder, r *resolved, servers []netip.Addr) {
	c := r.cfg
	b.chain("nat", ChainOutputDNS)
	b.chain("raw", ChainOutputDNS)
	b.add("raw", "OUTPUT", "", ChainOutputDNS)
	if c.CaptureAllDNS || len(servers) > 0 {
		b.add("nat", ChainOutput, "", ChainOutputDNS)
	}
	to := fmt.Sprintf("REDIRECT --to-ports %d", DNSCapturePort)
	for _, proto := range []string{"tcp", "udp"} {
		if c.CaptureAllDNS {
			b.add("nat", ChainOutputDNS, fmt.Sprintf("-p %s -m %s --dport 53", proto, proto), to)
			continue
		}
		for _, s := range servers {
			b.add("nat", ChainOutputDNS, fmt.Sprintf("-d %s -p %s -m %s --dport 53", hostPrefix(s), proto, proto), to)
		}
	}
	for _, kind := range []string{"uid", "gid"} {
		ids := r.uids
		if kind == "gid" {
			ids = r.gids
		}
		for _, id := range ids {
			b.add("raw", ChainOutputDNS, fmt.Sprintf("-p udp -m udp --dport 53 -m owner --%s-owner %s", kind, id), "CT --zone 1")
			b.add("raw", ChainOutputDNS, fmt.Sprintf("-p udp -m udp --sport %d -m owner --%s-owner %s", DNSCapturePort, kind, id), "CT --zone 2")
		}
	}
	if c.CaptureAllDNS {
		b.add("raw", "PREROUTING", "", ChainInbound)
		b.add("raw", ChainOutputDNS, "-p udp -m udp --dport 53", "CT --zone 2")
		b.add("raw", ChainInbound, "-p udp -m udp --sport 53", "CT --zone 1")
		return
	}
	if len(servers) > 0 {
		b.add("raw", "PREROUTING", "", ChainInbound)
	}
	for _, s := range servers {
		b.add("raw", ChainOutputDNS, fmt.Sprintf("-d %s -p udp -m udp --dport 53", hostPrefix(s)), "CT --zone 2")
		b.add("raw", ChainInbound, fmt.Sprintf("-s %s -p udp -m udp --sport 53", hostPrefix(s)), "CT --zone 1")
	}
}
