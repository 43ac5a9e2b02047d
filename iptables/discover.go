package iptables

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DiscoverIPv6 reports whether the namespace is IPv6 single-stack, the case
// where Istio enables the ip6tables half without --dual-stack: the first
// global unicast address found is IPv6 and there is no global IPv4 address.
func DiscoverIPv6() (bool, error) {
	addrs, err := netlink.AddrList(nil, unix.AF_UNSPEC)
	if err != nil {
		return false, fmt.Errorf("listing interface addresses: %w", err)
	}
	var v4, v6 bool
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || !ip.IsGlobalUnicast() {
			continue
		}
		if ip.Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v6 && !v4, nil
}

// ResolvConfServers returns the nameservers of a resolv.conf split by
// family; --redirect-dns without --capture-all-dns captures only these.
func ResolvConfServers(path string) (v4, v6 []string, err error) {
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("reading DNS servers for --redirect-dns: %w (use --capture-all-dns when there is no resolv.conf)", err)
	}
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if a.Unmap().Is4() {
			v4 = append(v4, a.Unmap().String())
		} else {
			v6 = append(v6, a.String())
		}
	}
	return v4, v6, nil
}
