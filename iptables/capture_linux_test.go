package iptables

import (
	"testing"
)

var backends = []Backend{BackendNFT, BackendLegacy}

// Every golden flag set must apply cleanly on both backends and read back
// exactly as planned (the plan is written in iptables-save's canonical form).
func TestGoldenPlansApplyOnBothBackends(t *testing.T) {
	e := newEnv(t)
	for _, b := range backends {
		for _, tc := range goldenCases {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			res := e.install(t, cfg, WithBackend(b))
			if res.Backends[IPv4] != b {
				t.Errorf("%s/%s: used backend %q", b, tc.name, res.Backends[IPv4])
			}
		}
		e.cleanup(t, DefaultConfig(), WithBackend(b))
	}
}

func TestOutboundRedirect(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t)
			e.install(t, DefaultConfig(), WithBackend(b))
			listen(t, e.pod, "tcp4", "0.0.0.0:15001", "outbound")
			listen(t, e.peer, "tcp4", hostport(peerV4, appPort), "peer")

			got := dial(t, e.pod, appUID, appGID, hostport(peerV4, appPort))
			if got.name != "outbound" || got.origDst != hostport(peerV4, appPort) {
				t.Errorf("app traffic: got %+v, want outbound listener with original dst %s", got, hostport(peerV4, appPort))
			}
			if got := dial(t, e.pod, proxyID, appGID, hostport(peerV4, appPort)); got.name != "peer" {
				t.Errorf("proxy UID traffic was captured: %+v", got)
			}
			if got := dial(t, e.pod, appUID, proxyID, hostport(peerV4, appPort)); got.name != "peer" {
				t.Errorf("proxy GID traffic was captured: %+v", got)
			}
		})
	}
}

func TestOutboundExclusionsAndInclusions(t *testing.T) {
	e := newEnv(t)
	listen(t, e.pod, "tcp4", "0.0.0.0:15001", "outbound")
	for _, p := range []int{appPort, 3306} {
		listen(t, e.peer, "tcp4", hostport(peerV4, p), "peer")
		listen(t, e.peer, "tcp4", hostport(farV4, p), "far")
	}
	check := func(addr, want string) {
		t.Helper()
		if got := dial(t, e.pod, appUID, appGID, addr); got.name != want {
			t.Errorf("dial %s: reached %q (%+v), want %q", addr, got.name, got, want)
		}
	}

	cfg := DefaultConfig()
	cfg.OutboundPortsExclude = "3306"
	cfg.OutboundIPRangesExclude = farV4 + "/32"
	e.install(t, cfg)
	check(hostport(peerV4, appPort), "outbound")
	check(hostport(peerV4, 3306), "peer")  // -o
	check(hostport(farV4, appPort), "far") // -x

	cfg = DefaultConfig()
	cfg.OutboundIPRangesInclude = "10.78.0.0/24" // -i: only the far network
	e.install(t, cfg)
	check(hostport(farV4, appPort), "outbound")
	check(hostport(peerV4, appPort), "peer")

	cfg = DefaultConfig()
	cfg.OutboundIPRangesInclude = "" // -i '' and -q 3306: only that port
	cfg.OutboundPortsInclude = "3306"
	e.install(t, cfg)
	check(hostport(peerV4, 3306), "outbound")
	check(hostport(peerV4, appPort), "peer")
}

func TestInboundRedirect(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t)
			cfg := DefaultConfig()
			cfg.InboundPortsExclude = "22"
			e.install(t, cfg, WithBackend(b))
			listen(t, e.pod, "tcp4", "0.0.0.0:15006", "inbound")
			listen(t, e.pod, "tcp4", "0.0.0.0:8080", "app")
			listen(t, e.pod, "tcp4", "0.0.0.0:22", "ssh")
			listen(t, e.pod, "tcp4", "0.0.0.0:15020", "status")

			got := dial(t, e.peer, appUID, appGID, hostport(podV4, appPort))
			if got.name != "inbound" || got.origDst != hostport(podV4, appPort) {
				t.Errorf("inbound: got %+v, want inbound listener with original dst %s", got, hostport(podV4, appPort))
			}
			if got := dial(t, e.peer, appUID, appGID, hostport(podV4, 22)); got.name != "ssh" {
				t.Errorf("-d 22 was captured: %+v", got)
			}
			if got := dial(t, e.peer, appUID, appGID, hostport(podV4, 15020)); got.name != "status" {
				t.Errorf("status port 15020 was captured: %+v", got)
			}
		})
	}
}

func TestInboundTProxy(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t)
			cfg := DefaultConfig()
			cfg.Mode = ModeTProxy
			cfg.DualStack = true
			e.install(t, cfg, WithBackend(b))
			serve(t, e.pod.Listen(t, "tcp4", "0.0.0.0:15006", TransparentListenConfig()), "tproxy")
			serve(t, e.pod.Listen(t, "tcp6", "[::]:15006", TransparentListenConfig()), "tproxy")
			listen(t, e.pod, "tcp4", "0.0.0.0:15021", "status")

			for _, dst := range []string{hostport(podV4, appPort), hostport(podV6, appPort)} {
				got := dial(t, e.peer, appUID, appGID, dst)
				if got.name != "tproxy" || got.local != dst {
					t.Errorf("TPROXY inbound to %s: got %+v, want the transparent listener with local address %s", dst, got, dst)
				}
			}
			if got := dial(t, e.peer, appUID, appGID, hostport(podV4, 15021)); got.name != "status" {
				t.Errorf("status port 15021 was captured in TPROXY mode: %+v", got)
			}
			// Outbound capture is unchanged in TPROXY mode.
			listen(t, e.pod, "tcp4", "0.0.0.0:15001", "outbound")
			listen(t, e.peer, "tcp4", hostport(peerV4, appPort), "peer")
			if got := dial(t, e.pod, appUID, appGID, hostport(peerV4, appPort)); got.name != "outbound" {
				t.Errorf("outbound in TPROXY mode: %+v", got)
			}
		})
	}
}

func TestDualStack(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t)
			cfg := DefaultConfig()
			cfg.DualStack = true
			e.install(t, cfg, WithBackend(b))
			listen(t, e.pod, "tcp6", "[::]:15001", "outbound")
			listen(t, e.pod, "tcp6", "[::]:15006", "inbound")
			listen(t, e.peer, "tcp6", hostport(peerV6, appPort), "peer")

			got := dial(t, e.pod, appUID, appGID, hostport(peerV6, appPort))
			if got.name != "outbound" || got.origDst != hostport(peerV6, appPort) {
				t.Errorf("IPv6 outbound: got %+v, want original dst %s", got, hostport(peerV6, appPort))
			}
			if got := dial(t, e.pod, proxyID, proxyID, hostport(peerV6, appPort)); got.name != "peer" {
				t.Errorf("IPv6 proxy traffic captured: %+v", got)
			}
			got = dial(t, e.peer, appUID, appGID, hostport(podV6, appPort))
			if got.name != "inbound" || got.origDst != hostport(podV6, appPort) {
				t.Errorf("IPv6 inbound: got %+v", got)
			}
			// And IPv4 still works in the same namespace.
			listen(t, e.pod, "tcp4", "0.0.0.0:15001", "outbound4")
			listen(t, e.peer, "tcp4", hostport(peerV4, appPort), "peer4")
			if got := dial(t, e.pod, appUID, appGID, hostport(peerV4, appPort)); got.name != "outbound4" {
				t.Errorf("IPv4 outbound in dual stack: %+v", got)
			}
		})
	}
}

func TestRedirectDNS(t *testing.T) {
	e := newEnv(t)
	cfg := DefaultConfig()
	cfg.RedirectDNS = true
	cfg.DNSServersV4 = []string{peerV4}
	e.install(t, cfg)
	// The agent's DNS proxy listens on localhost as the proxy user; the
	// conntrack zone rules rely on both.
	servePacket(t, e.pod.ListenPacketAs(t, proxyID, proxyID, "udp4", "127.0.0.1:15053"), "agent-dns")
	listen(t, e.pod, "tcp4", "127.0.0.1:15053", "agent-dns")
	servePacket(t, e.peer.ListenPacket(t, "udp4", hostport(peerV4, 53)), "upstream")
	listen(t, e.peer, "tcp4", hostport(peerV4, 53), "upstream")

	if got := query(t, e.pod, appUID, appGID, "udp4", hostport(peerV4, 53)); got != "agent-dns" {
		t.Errorf("app UDP DNS reached %q, want the agent on 15053", got)
	}
	if got := dial(t, e.pod, appUID, appGID, hostport(peerV4, 53)); got.name != "agent-dns" {
		t.Errorf("app TCP DNS reached %+v, want the agent on 15053", got)
	}
	if got := query(t, e.pod, proxyID, proxyID, "udp4", hostport(peerV4, 53)); got != "upstream" {
		t.Errorf("proxy's own UDP DNS reached %q, want upstream", got)
	}
	if got := dial(t, e.pod, proxyID, proxyID, hostport(peerV4, 53)); got.name != "upstream" {
		t.Errorf("proxy's own TCP DNS reached %+v, want upstream", got)
	}
}

func TestCaptureAllDNSDualStack(t *testing.T) {
	e := newEnv(t)
	cfg := DefaultConfig()
	cfg.RedirectDNS, cfg.CaptureAllDNS, cfg.DualStack = true, true, true
	e.install(t, cfg)
	servePacket(t, e.pod.ListenPacketAs(t, proxyID, proxyID, "udp4", "127.0.0.1:15053"), "agent-dns")
	servePacket(t, e.pod.ListenPacketAs(t, proxyID, proxyID, "udp6", "[::1]:15053"), "agent-dns")
	servePacket(t, e.peer.ListenPacket(t, "udp4", hostport(farV4, 53)), "upstream")
	servePacket(t, e.peer.ListenPacket(t, "udp6", hostport(farV6, 53)), "upstream")
	for _, a := range []struct{ network, addr string }{{"udp4", hostport(farV4, 53)}, {"udp6", hostport(farV6, 53)}} {
		if got := query(t, e.pod, appUID, appGID, a.network, a.addr); got != "agent-dns" {
			t.Errorf("app DNS to %s reached %q, want the agent", a.addr, got)
		}
		if got := query(t, e.pod, proxyID, proxyID, a.network, a.addr); got != "upstream" {
			t.Errorf("proxy DNS to %s reached %q, want upstream", a.addr, got)
		}
	}
}

func TestKubeVirtInterfacesAreTreatedAsOutbound(t *testing.T) {
	// Traffic arriving on -k interfaces (a VM's tap) is captured as outbound.
	e := newEnv(t)
	cfg := DefaultConfig()
	cfg.KubeVirtInterfaces = "eth0"
	e.install(t, cfg)
	listen(t, e.pod, "tcp4", "0.0.0.0:15001", "outbound")
	listen(t, e.pod, "tcp4", "0.0.0.0:15006", "inbound")
	got := dial(t, e.peer, appUID, appGID, hostport(podV4, appPort))
	if got.name != "outbound" {
		t.Errorf("traffic from a kube-virt interface reached %+v, want the outbound listener", got)
	}
}

func TestExcludeInterface(t *testing.T) {
	e := newEnv(t)
	cfg := DefaultConfig()
	cfg.ExcludeInterfaces = "eth0"
	e.install(t, cfg)
	listen(t, e.pod, "tcp4", "0.0.0.0:15006", "inbound")
	listen(t, e.pod, "tcp4", "0.0.0.0:8080", "app")
	listen(t, e.pod, "tcp4", "0.0.0.0:15001", "outbound")
	listen(t, e.peer, "tcp4", hostport(peerV4, appPort), "peer")
	if got := dial(t, e.peer, appUID, appGID, hostport(podV4, appPort)); got.name != "app" {
		t.Errorf("inbound on excluded interface reached %+v", got)
	}
	if got := dial(t, e.pod, appUID, appGID, hostport(peerV4, appPort)); got.name != "peer" {
		t.Errorf("outbound on excluded interface reached %+v", got)
	}
}

func TestInboundIncludeListCapturesOnlyListedPorts(t *testing.T) {
	for _, mode := range []string{ModeRedirect, ModeTProxy} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			cfg := DefaultConfig()
			cfg.Mode = mode
			cfg.InboundPortsInclude = "8080"
			e.install(t, cfg)
			lc := TransparentListenConfig()
			if mode == ModeRedirect {
				lc = nil
			}
			serve(t, e.pod.Listen(t, "tcp4", "0.0.0.0:15006", lc), "inbound")
			listen(t, e.pod, "tcp4", "0.0.0.0:9090", "other-app")
			if got := dial(t, e.peer, appUID, appGID, hostport(podV4, appPort)); got.name != "inbound" {
				t.Errorf("-b 8080: port 8080 reached %+v, want the inbound listener", got)
			}
			if got := dial(t, e.peer, appUID, appGID, hostport(podV4, 9090)); got.name != "other-app" {
				t.Errorf("-b 8080: port 9090 reached %+v, want the app directly", got)
			}
		})
	}
}
