package iptables

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func fancyConfig() CaptureConfig {
	cfg := DefaultConfig()
	cfg.Mode = ModeTProxy
	cfg.DualStack = true
	cfg.RedirectDNS, cfg.CaptureAllDNS, cfg.DropInvalid = true, true, true
	cfg.ExcludeInterfaces = "eth0"
	cfg.OutboundIPRangesExclude = "10.96.0.0/12"
	return cfg
}

func addForeignRules(t *testing.T, e *env, b Backend) {
	t.Helper()
	ipt := b.binary(IPv4, "")
	for _, args := range [][]string{
		{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT"},
		// Same shape as meshlite's -c rule, but not ours: must survive.
		{"-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-j", "RETURN"},
		{"-t", "nat", "-N", "FOREIGN"},
		{"-t", "nat", "-A", "FOREIGN", "-d", "10.1.1.1", "-j", "RETURN"},
		{"-t", "nat", "-A", "OUTPUT", "-j", "FOREIGN"},
		{"-t", "mangle", "-A", "OUTPUT", "-p", "udp", "-j", "MARK", "--set-mark", "7"},
		{"-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"},
	} {
		e.pod.MustExec(t, ipt, args...)
	}
	e.pod.MustExec(t, b.binary(IPv6, ""), "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
	e.pod.MustExec(t, "ip", "rule", "add", "fwmark", "7", "lookup", "100")
	e.pod.MustExec(t, "ip", "route", "add", "local", "default", "dev", "lo", "table", "100")
}

func TestIdempotentAndNoDuplicateIPRule(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t)
			addForeignRules(t, e, b)
			first := e.install(t, fancyConfig())
			if first.Backends[IPv4] != b {
				t.Errorf("auto-detection picked %s although only %s has rules (%s)", first.Backends[IPv4], b, first.Reasons[IPv4])
			}
			before := e.snapshot(t)
			for i := 0; i < 2; i++ {
				res := e.install(t, fancyConfig())
				if res.Changed() {
					t.Errorf("re-run %d changed %v (routes %v)", i+1, res.ChangedTables, res.RoutesChanged)
				}
				if res.Backends[IPv4] != first.Backends[IPv4] {
					t.Errorf("re-run picked backend %s, first run %s", res.Backends[IPv4], first.Backends[IPv4])
				}
			}
			after := e.snapshot(t)
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("re-run changed the namespace (-before +after):\n%s", diff)
			}
			if n := strings.Count(e.pod.MustExec(t, "ip", "-4", "rule"), "lookup 133"); n != 1 {
				t.Errorf("found %d ip rules for table 133, want exactly 1", n)
			}
		})
	}
}

// Istio's probe leaves an empty legacy nat table behind, so its second run
// picks the other backend (istio/istio#61020). Detection here only reads and
// ignores empty tables.
func TestDetectionDoesNotPrimeItself(t *testing.T) {
	e := newEnv(t)
	r1 := e.install(t, DefaultConfig())
	var legacy bool
	_ = e.pod.Do(func() error { legacy = legacyTablesExist(IPv4); return nil })
	if r1.Backends[IPv4] == BackendNFT && legacy {
		t.Error("detection created a legacy table")
	}
	// Simulate Istio's leftover: an empty legacy nat table.
	e.pod.MustExec(t, "iptables-legacy", "-t", "nat", "-S")
	r2 := e.install(t, DefaultConfig())
	if r2.Backends[IPv4] != r1.Backends[IPv4] || r2.Changed() {
		t.Errorf("second run: backend %s (first %s), changed %v; want same backend, no change", r2.Backends[IPv4], r1.Backends[IPv4], r2.ChangedTables)
	}
	if strings.Contains(e.pod.MustExec(t, "iptables-legacy-save"), "ISTIO") {
		t.Error("rules were installed twice, in both backends")
	}
}

func TestPrefersBackendWithExistingRules(t *testing.T) {
	e := newEnv(t)
	e.pod.MustExec(t, "iptables-legacy", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	res := e.install(t, DefaultConfig())
	if res.Backends[IPv4] != BackendLegacy {
		t.Errorf("picked %s (%s), want legacy which already has rules", res.Backends[IPv4], res.Reasons[IPv4])
	}
	if !strings.Contains(res.Reasons[IPv4], "legacy") {
		t.Errorf("reason %q does not explain the choice", res.Reasons[IPv4])
	}
}

func TestConvergesAndCleansUpKeepingForeignRules(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t)
			addForeignRules(t, e, b)
			pristine := e.snapshot(t)

			e.install(t, DefaultConfig(), WithBackend(b))
			defaultState := e.snapshot(t)

			e.install(t, fancyConfig(), WithBackend(b))
			if !strings.Contains(e.pod.MustExec(t, "ip", "-6", "rule"), "lookup 133") {
				t.Fatal("TPROXY config did not install the IPv6 ip rule")
			}
			e.install(t, DefaultConfig(), WithBackend(b))
			if diff := cmp.Diff(defaultState, e.snapshot(t)); diff != "" {
				t.Errorf("switching back to the default config left differences (-want +got):\n%s", diff)
			}

			e.install(t, fancyConfig(), WithBackend(b))
			e.cleanup(t, fancyConfig())
			if diff := cmp.Diff(pristine, e.snapshot(t)); diff != "" {
				t.Errorf("cleanup did not restore the pre-existing state (-want +got):\n%s", diff)
			}
			if res := e.cleanup(t, fancyConfig()); res.Changed() {
				t.Errorf("second cleanup changed %v", res.ChangedTables)
			}
		})
	}
}
