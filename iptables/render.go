package iptables

import (
	"fmt"
	"strings"
)

// RouteProtocol tags the ip rules and routes meshlite adds (the `proto`
// column of `ip rule`/`ip route`), so that convergence and cleanup remove
// exactly ours even after the mark or table number changed.
const RouteProtocol = 77

// RenderTable renders one table of the plan in iptables-save format.
func RenderTable(t Table) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "*%s\n", t.Name)
	for _, c := range t.Chains {
		fmt.Fprintf(&sb, ":%s - [0:0]\n", c)
	}
	for _, r := range t.Rules {
		sb.WriteString(r.String())
		sb.WriteByte('\n')
	}
	sb.WriteString("COMMIT\n")
	return sb.String()
}

// Render prints the whole plan for humans and for `pilot-agent check`: each
// family in iptables-save format, then the netlink changes. --dry-run prints
// exactly this.
func Render(p Plan) string {
	var sb strings.Builder
	for _, f := range p.Families {
		save := "iptables-save"
		if f.Family == IPv6 {
			save = "ip6tables-save"
		}
		fmt.Fprintf(&sb, "# %s: %s format, %d rules\n", f.Family, save, countRules(f))
		for _, t := range f.Tables {
			sb.WriteString(RenderTable(t))
		}
	}
	sb.WriteString("# netlink\n")
	lines := netlinkLines(p)
	if len(lines) == 0 {
		sb.WriteString("# (no changes)\n")
	}
	for _, l := range lines {
		sb.WriteString(l)
		sb.WriteByte('\n')
	}
	return sb.String()
}

func countRules(f FamilyPlan) int {
	n := 0
	for _, t := range f.Tables {
		n += len(t.Rules)
	}
	return n
}

func netlinkLines(p Plan) []string {
	var out []string
	if p.LoopbackIPv6 {
		out = append(out, "ip -6 addr add ::6/128 dev lo")
	}
	for _, r := range p.Routes {
		v := "-4"
		if r.Family == IPv6 {
			v = "-6"
		}
		out = append(out,
			fmt.Sprintf("ip %s rule add fwmark %d lookup %d protocol %d", v, r.Mark, r.Table, RouteProtocol),
			fmt.Sprintf("ip %s route add local default dev lo table %d proto %d", v, r.Table, RouteProtocol))
	}
	return out
}
