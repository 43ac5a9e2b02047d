package iptables

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenCases are the flag sets whose rendered plan is pinned in
// testdata/<name>.golden. The mutate funcs mirror istio-iptables flags.
var goldenCases = []struct {
	name   string
	mutate func(*CaptureConfig)
}{
	{"default", func(*CaptureConfig) {}},
	{"tproxy", func(c *CaptureConfig) { c.Mode = ModeTProxy }},
	{"dual-stack", func(c *CaptureConfig) { c.DualStack = true }},
	{"tproxy-dual-stack", func(c *CaptureConfig) { c.Mode = ModeTProxy; c.DualStack = true }},
	{"inbound-include", func(c *CaptureConfig) { c.InboundPortsInclude = "8080,9090" }},
	{"inbound-include-tproxy", func(c *CaptureConfig) { c.Mode = ModeTProxy; c.InboundPortsInclude = "8080" }},
	{"inbound-none", func(c *CaptureConfig) { c.InboundPortsInclude = "" }},
	{"inbound-exclude", func(c *CaptureConfig) { c.InboundPortsExclude = "22,15020" }},
	{"outbound-ports", func(c *CaptureConfig) { c.OutboundPortsInclude = "80,443"; c.OutboundPortsExclude = "3306" }},
	{"ip-ranges", func(c *CaptureConfig) {
		c.OutboundIPRangesInclude = "10.0.0.0/8,fd00::/8"
		c.OutboundIPRangesExclude = "10.96.0.1/32,fd00:1::/64"
		c.DualStack = true
	}},
	{"exclude-cidr", func(c *CaptureConfig) { c.OutboundIPRangesExclude = "169.254.169.254/32,10.1.2.3/16" }},
	{"interfaces", func(c *CaptureConfig) { c.ExcludeInterfaces = "eth1"; c.KubeVirtInterfaces = "tap0,tap1" }},
	{"interfaces-tproxy-ranges", func(c *CaptureConfig) {
		c.Mode = ModeTProxy
		c.ExcludeInterfaces = "eth1"
		c.KubeVirtInterfaces = "tap0"
		c.OutboundIPRangesInclude = "10.0.0.0/8"
	}},
	{"uid-gid", func(c *CaptureConfig) { c.ProxyUID = "1337,1338"; c.ProxyGID = "1400" }},
	{"redirect-dns", func(c *CaptureConfig) { c.RedirectDNS = true; c.DNSServersV4 = []string{"10.96.0.10"} }},
	{"redirect-dns-none", func(c *CaptureConfig) { c.RedirectDNS = true }},
	{"capture-all-dns", func(c *CaptureConfig) { c.RedirectDNS = true; c.CaptureAllDNS = true }},
	{"capture-all-dns-dual", func(c *CaptureConfig) {
		c.RedirectDNS = true
		c.CaptureAllDNS = true
		c.DualStack = true
	}},
	{"dns-v6-servers", func(c *CaptureConfig) {
		c.RedirectDNS = true
		c.EnableIPv6 = true
		c.DNSServersV4 = []string{"10.96.0.10"}
		c.DNSServersV6 = []string{"fd00::a"}
	}},
	{"drop-invalid", func(c *CaptureConfig) { c.DropInvalid = true }},
	{"loopback-include", func(c *CaptureConfig) { c.OutboundIPRangesInclude = "127.0.0.1/32,10.0.0.0/8" }},
	{"custom-ports", func(c *CaptureConfig) {
		c.ProxyPort, c.InboundCapturePort, c.InboundTunnelPort = 16001, 16006, 16008
		c.Mode = ModeTProxy
		c.TProxyMark, c.TProxyRouteTable = 1500, 150
	}},
}

func TestPlanGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			p, err := Build(cfg)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			got := Render(p)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./iptables -run TestPlanGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("plan differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// The default set is Istio's 18-rule sidecar set, plus nothing else.
func TestDefaultPlanMatchesIstioShape(t *testing.T) {
	p, err := Build(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.RuleCount(); got != 18 {
		t.Errorf("default plan has %d rules, want Istio's 18", got)
	}
	if len(p.Families) != 1 || len(p.Families[0].Tables) != 1 || p.Families[0].Tables[0].Name != "nat" {
		t.Errorf("default plan should touch only the IPv4 nat table, got %+v", p.Families)
	}
	if len(p.Routes) != 0 {
		t.Errorf("REDIRECT mode needs no policy routes, got %+v", p.Routes)
	}
	nat, _ := p.Families[0].Table("nat")
	in := strings.Join(nat.ChainRules(ChainInbound), "\n")
	for _, port := range []string{"15008", "15090", "15021", "15020"} {
		if !strings.Contains(in, "--dport "+port+" -j RETURN") {
			t.Errorf("port %s is not excluded from inbound capture:\n%s", port, in)
		}
	}
}

func TestTProxyPlanHasRoutes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Mode = ModeTProxy
	cfg.DualStack = true
	p, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []RoutePlan{{IPv4, 1337, 133}, {IPv6, 1337, 133}}
	if diff := cmp.Diff(want, p.Routes); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	if !p.LoopbackIPv6 {
		t.Error("dual stack must add ::6 to lo")
	}
}

func TestBuiltinRulesCarryMarker(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Mode = ModeTProxy
	cfg.ExcludeInterfaces = "eth1"
	cfg.RedirectDNS, cfg.CaptureAllDNS, cfg.DropInvalid = true, true, true
	p, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range p.Families {
		for _, tb := range f.Tables {
			for _, r := range tb.Rules {
				has := strings.Contains(r.Spec, "--comment "+Marker)
				if isBuiltin(r.Chain) != has {
					t.Errorf("%s %s: builtin=%v marker=%v", tb.Name, r, isBuiltin(r.Chain), has)
				}
			}
		}
	}
}

func TestValidateNamesFlagAndValue(t *testing.T) {
	cases := []struct {
		name     string
		mutate   func(*CaptureConfig)
		flag     string
		valueSub string
	}{
		{"bad cidr", func(c *CaptureConfig) { c.OutboundIPRangesInclude = "10.0.0.0/33" }, flagCIDRs, "10.0.0.0/33"},
		{"bad exclude cidr", func(c *CaptureConfig) { c.OutboundIPRangesExclude = "nope" }, flagCIDRExclude, "nope"},
		{"wildcard exclude cidr", func(c *CaptureConfig) { c.OutboundIPRangesExclude = "*" }, flagCIDRExclude, "*"},
		{"port out of range", func(c *CaptureConfig) { c.InboundPortsInclude = "80,70000" }, flagInPorts, "70000"},
		{"port zero", func(c *CaptureConfig) { c.OutboundPortsExclude = "0" }, flagOutExclude, "0"},
		{"port not number", func(c *CaptureConfig) { c.OutboundPortsInclude = "http" }, flagOutPorts, "http"},
		{"unknown mode", func(c *CaptureConfig) { c.Mode = "TPROXIE" }, flagMode, "TPROXIE"},
		{"include and exclude inbound", func(c *CaptureConfig) { c.InboundPortsInclude = "8080"; c.InboundPortsExclude = "8080" }, flagInExclude, "8080"},
		{"include and exclude outbound", func(c *CaptureConfig) { c.OutboundPortsInclude = "443"; c.OutboundPortsExclude = "443" }, flagOutExclude, "443"},
		{"same cidr", func(c *CaptureConfig) {
			c.OutboundIPRangesInclude = "10.0.0.0/8"
			c.OutboundIPRangesExclude = "10.0.0.0/8"
		}, flagCIDRExclude, "10.0.0.0/8"},
		{"bad uid", func(c *CaptureConfig) { c.ProxyUID = "istio-proxy" }, flagUID, "istio-proxy"},
		{"empty uid", func(c *CaptureConfig) { c.ProxyUID = "" }, flagUID, ""},
		{"bad gid", func(c *CaptureConfig) { c.ProxyGID = "-1" }, flagGID, "-1"},
		{"zero proxy port", func(c *CaptureConfig) { c.ProxyPort = 0 }, flagProxyPort, "0"},
		{"bad interface", func(c *CaptureConfig) { c.ExcludeInterfaces = "this-name-is-too-long" }, flagExcludeNIC, "this-name-is-too-long"},
		{"bad loopback", func(c *CaptureConfig) { c.HostIPv4LoopbackCIDR = "10.0.0.1/32" }, flagLoopback, "10.0.0.1/32"},
		{"reserved table", func(c *CaptureConfig) { c.Mode = ModeTProxy; c.TProxyRouteTable = 254 }, flagTable, "254"},
		{"bad dns server", func(c *CaptureConfig) { c.RedirectDNS = true; c.DNSServersV4 = []string{"x"} }, flagDNSServers, "x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, want a *FieldError", err)
			}
			if fe.Flag != tc.flag || !strings.Contains(err.Error(), tc.valueSub) {
				t.Errorf("error %q should name flag %s and value %q", err, tc.flag, tc.valueSub)
			}
			if _, err := Build(cfg); err == nil {
				t.Error("Build accepted an invalid config")
			}
		})
	}
}

func TestBuildIsPure(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Mode = ModeTProxy
	cfg.DualStack = true
	a, _ := Build(cfg)
	b, _ := Build(cfg)
	if Render(a) != Render(b) {
		t.Error("Build is not deterministic")
	}
}
