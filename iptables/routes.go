package iptables

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var loopbackIPv6 = &net.IPNet{IP: net.ParseIP("::6"), Mask: net.CIDRMask(128, 128)}

func nlFamily(f Family) int {
	if f == IPv6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// convergeRoutes makes meshlite's ip rules and routes (tagged with
// RouteProtocol) exactly those of the plan: missing ones are added,
// duplicates and stale ones removed. Nothing untagged is touched.
func convergeRoutes(p Plan, o options) (bool, error) {
	changed := false
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return false, fmt.Errorf("finding the loopback interface: %w", err)
	}
	if len(p.Routes) > 0 && lo.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(lo); err != nil {
			return false, fmt.Errorf("bringing lo up for TPROXY: %w", err)
		}
		changed = true
	}
	if c, err := convergeLoopbackIPv6(lo, p.LoopbackIPv6); err != nil {
		return changed, err
	} else if c {
		changed = true
	}
	for _, f := range []Family{IPv4, IPv6} {
		var want *RoutePlan
		for i := range p.Routes {
			if p.Routes[i].Family == f {
				want = &p.Routes[i]
			}
		}
		c, err := convergeFamilyRoutes(f, want, lo.Attrs().Index)
		if err != nil {
			return changed, err
		}
		if c {
			changed = true
			o.logger.Info("policy routing converged", "family", f.String(), "tproxy", want != nil)
		}
	}
	return changed, nil
}

func convergeFamilyRoutes(f Family, want *RoutePlan, loIndex int) (bool, error) {
	fam := nlFamily(f)
	changed := false
	rules, err := netlink.RuleList(fam)
	if err != nil {
		if want == nil && errors.Is(err, unix.EAFNOSUPPORT) {
			return false, nil
		}
		return false, fmt.Errorf("listing %s ip rules: %w", f, err)
	}
	kept := false
	for _, r := range rules {
		if r.Protocol != RouteProtocol {
			continue
		}
		if want != nil && !kept && r.Table == want.Table && r.Mark == want.Mark {
			kept = true
			continue
		}
		r := r
		if err := netlink.RuleDel(&r); err != nil {
			return changed, fmt.Errorf("removing stale %s ip rule fwmark %d lookup %d: %w", f, r.Mark, r.Table, err)
		}
		changed = true
	}
	if want != nil && !kept {
		r := netlink.NewRule()
		r.Family, r.Table, r.Mark, r.Protocol = fam, want.Table, want.Mark, RouteProtocol
		if err := netlink.RuleAdd(r); err != nil {
			return changed, fmt.Errorf("adding %s ip rule fwmark %d lookup %d: %w", f, want.Mark, want.Table, err)
		}
		changed = true
	}

	routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: RouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return changed, fmt.Errorf("listing %s routes: %w", f, err)
	}
	kept = false
	for _, rt := range routes {
		if want != nil && !kept && rt.Table == want.Table && rt.Type == unix.RTN_LOCAL && rt.LinkIndex == loIndex && isDefault(rt.Dst) {
			kept = true
			continue
		}
		rt := rt
		if err := netlink.RouteDel(&rt); err != nil {
			return changed, fmt.Errorf("removing stale %s route in table %d: %w", f, rt.Table, err)
		}
		changed = true
	}
	if want != nil && !kept {
		dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if f == IPv6 {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		rt := &netlink.Route{Dst: dst, Scope: netlink.SCOPE_HOST, Type: unix.RTN_LOCAL, Table: want.Table,
			LinkIndex: loIndex, Protocol: RouteProtocol, Family: fam}
		if err := netlink.RouteAdd(rt); err != nil {
			return changed, fmt.Errorf("adding %s route local default dev lo table %d: %w", f, want.Table, err)
		}
		changed = true
	}
	return changed, nil
}

func hasLocalRoute(dst *net.IPNet) bool {
	routes, err := netlink.RouteListFiltered(unix.AF_INET6, &netlink.Route{Table: unix.RT_TABLE_LOCAL, Dst: dst},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	return err == nil && len(routes) > 0
}

func isDefault(n *net.IPNet) bool {
	if n == nil {
		return true
	}
	ones, _ := n.Mask.Size()
	return ones == 0
}

// convergeLoopbackIPv6 adds or removes ::6/128 on lo, the source Envoy uses
// for inbound passthrough over IPv6 (IPv4 has all of 127/8 on lo already).
func convergeLoopbackIPv6(lo netlink.Link, want bool) (bool, error) {
	addrs, err := netlink.AddrList(lo, unix.AF_INET6)
	if err != nil {
		if !want {
			return false, nil
		}
		return false, fmt.Errorf("listing lo IPv6 addresses: %w", err)
	}
	has := false
	for _, a := range addrs {
		if a.IPNet != nil && a.IPNet.String() == loopbackIPv6.String() {
			has = true
		}
	}
	switch {
	case want && !has:
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: loopbackIPv6}); err != nil {
			return false, fmt.Errorf("adding ::6/128 to lo (is IPv6 disabled in this namespace?): %w", err)
		}
		// The kernel installs the address's local route asynchronously;
		// wait for it so ::6 is usable (and the state final) on return.
		deadline := time.Now().Add(time.Second)
		for !hasLocalRoute(loopbackIPv6) {
			if time.Now().After(deadline) {
				return true, fmt.Errorf("::6/128 was added to lo but its local route did not appear within 1s; check `ip -6 route show table local`")
			}
			time.Sleep(2 * time.Millisecond)
		}
		return true, nil
	case !want && has:
		if err := netlink.AddrDel(lo, &netlink.Addr{IPNet: loopbackIPv6}); err != nil {
			return false, fmt.Errorf("removing ::6/128 from lo: %w", err)
		}
		return true, nil
	}
	return false, nil
}
