package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/cmd/internal/cli"
	"github.com/meshlite/meshlite/test/netns"
)

// runPilotAgent runs the real root command in-process and returns stdout,
// stderr and the exit status main would use.
func runPilotAgent(args ...string) (stdout, stderr string, code int) {
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(&errb, "Error:", err)
		return out.String(), errb.String(), cli.ExitCode(err)
	}
	return out.String(), errb.String(), 0
}

// runIn runs pilot-agent on a thread inside ns.
func runIn(t *testing.T, ns *netns.NS, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	_ = ns.Do(func() error { stdout, stderr, code = runPilotAgent(args...); return nil })
	return
}

func TestIstioIptablesEnvAndFlags(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		want    []string
		notWant []string
	}{
		{name: "defaults are the injector's", want: []string{
			"-A ISTIO_INBOUND -p tcp -m tcp --dport 15020 -j RETURN",
			"-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
			"-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
			"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
		}},
		{name: "inbound ports from env", env: map[string]string{"ISTIO_INBOUND_PORTS": "8080"},
			want: []string{"-A ISTIO_INBOUND -p tcp -m tcp --dport 8080 -j ISTIO_IN_REDIRECT"}},
		{name: "flag beats env", env: map[string]string{"ISTIO_INBOUND_PORTS": "8080"}, args: []string{"-b", "9090"},
			want: []string{"--dport 9090 -j ISTIO_IN_REDIRECT"}, notWant: []string{"--dport 8080"}},
		{name: "mode and ports", args: []string{"-p", "16001", "-z", "16006", "-m", "TPROXY", "-u", "2000", "-g", "2001"},
			want: []string{"REDIRECT --to-ports 16001", "TPROXY --on-port 16006", "--uid-owner 2000", "--gid-owner 2001", "ip -4 rule add fwmark 1337 lookup 133"}},
		{name: "interception mode env", env: map[string]string{"INBOUND_INTERCEPTION_MODE": "TPROXY"}, want: []string{"ISTIO_TPROXY"}},
		{name: "dns capture aliases", env: map[string]string{"ISTIO_META_DNS_CAPTURE": "true", "CAPTURE_ALL_DNS": "true"},
			want: []string{"-A ISTIO_OUTPUT_DNS -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053"}},
		{name: "drop invalid alias", env: map[string]string{"INVALID_DROP": "true"}, want: []string{"-j ISTIO_DROP"}},
		{name: "dual stack alias", env: map[string]string{"ISTIO_DUAL_STACK": "true"}, want: []string{"# IPv6: ip6tables-save format"}},
		{name: "outbound lists", args: []string{"-i", "10.0.0.0/8", "-x", "10.96.0.1/32", "-o", "3306", "-q", "443", "-c", "eth1", "-k", "tap0"},
			want: []string{"-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT", "-A ISTIO_OUTPUT -d 10.96.0.1/32 -j RETURN",
				"--dport 3306 -j RETURN", "--dport 443 -j ISTIO_REDIRECT", "-A PREROUTING -i eth1", "-A PREROUTING -d 10.0.0.0/8 -i tap0"}},
		{name: "resolv.conf servers", args: []string{"--redirect-dns", "--resolv-conf", "testdata-resolv"},
			want: []string{"-d 10.96.0.10/32 -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053"}},
	}
	resolv := t.TempDir() + "/resolv.conf"
	if err := os.WriteFile(resolv, []byte("nameserver 10.96.0.10\nsearch svc.cluster.local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := []string{"istio-iptables", "--dry-run"}
			for _, a := range tc.args {
				if a == "testdata-resolv" {
					a = resolv
				}
				args = append(args, a)
			}
			out, errOut, code := runPilotAgent(args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if !strings.HasPrefix(out, "# dry run: nothing was changed") {
				t.Errorf("dry-run output does not say nothing changed:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("plan lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("plan has %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestIstioIptablesInvalidInput(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"-b", "80,70000"}, want: `invalid -b/--istio-inbound-ports value "80,70000"`},
		{args: []string{"-i", "10.0.0.0/33"}, want: `invalid -i/--istio-service-cidr value "10.0.0.0/33"`},
		{args: []string{"-m", "MAGIC"}, want: `invalid -m/--istio-inbound-interception-mode value "MAGIC": must be "REDIRECT" or "TPROXY"`},
		{args: []string{"-q", "443", "-o", "443"}, want: `port 443 is both included by -q/--istio-outbound-ports="443" and excluded`},
		{env: map[string]string{"ISTIO_SERVICE_EXCLUDE_CIDR": "bogus"}, want: "(set by environment variable ISTIO_SERVICE_EXCLUDE_CIDR)"},
		{env: map[string]string{"INBOUND_CAPTURE_PORT": "99999"}, want: `invalid INBOUND_CAPTURE_PORT="99999"`},
		{args: []string{"--force-iptables-binary", "iptables-magic"}, want: `invalid --force-iptables-binary value "iptables-magic"`},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			// --dry-run as a second safety net: input errors must stop
			// the command before it would touch anything anyway.
			_, errOut, code := runPilotAgent(append([]string{"istio-iptables", "--dry-run"}, tc.args...)...)
			if code != exitInvalidCaptureInput || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d naming %q", code, errOut, exitInvalidCaptureInput, tc.want)
			}
		})
	}
}

// snapshot is everything istio-iptables could change in a namespace.
func snapshot(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var sb strings.Builder
	for _, cmd := range [][]string{
		{"iptables-nft-save"}, {"ip6tables-nft-save"}, {"ip", "-4", "rule"}, {"ip", "-6", "rule"},
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"}, {"ip", "addr"},
	} {
		out := ns.MustExec(t, cmd[0], cmd[1:]...)
		var keep []string
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "# ") {
				keep = append(keep, l)
			}
		}
		fmt.Fprintf(&sb, "## %s\n%s\n", strings.Join(cmd, " "), strings.Join(keep, "\n"))
	}
	_ = ns.Do(func() error {
		for _, f := range []string{"ip_tables_names", "ip6_tables_names"} {
			b, _ := os.ReadFile("/proc/thread-self/net/" + f)
			fmt.Fprintf(&sb, "## legacy %s\n%s\n", f, b)
		}
		return nil
	})
	return sb.String()
}

func TestIstioIptablesDryRunAndInvalidInputTouchNothing(t *testing.T) {
	netns.RequireRoot(t, "iptables-nft-save", "ip")
	ns := netns.New(t)
	ns.MustExec(t, "iptables-nft", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
	before := snapshot(t, ns)
	out, errOut, code := runIn(t, ns, "istio-iptables", "--dry-run", "-m", "TPROXY", "--dual-stack", "--redirect-dns", "--capture-all-dns", "--drop-invalid")
	if code != 0 {
		t.Fatalf("dry run exit %d: %s", code, errOut)
	}
	for _, w := range []string{"*mangle", "*nat", "*raw", "ip -4 rule add fwmark 1337 lookup 133", "ip -6 route add local default dev lo table 133"} {
		if !strings.Contains(out, w) {
			t.Errorf("dry run output lacks %q", w)
		}
	}
	if _, _, code := runIn(t, ns, "istio-iptables", "--cleanup-only", "--dry-run"); code != 0 {
		t.Errorf("cleanup dry run exit %d", code)
	}
	if _, _, code := runIn(t, ns, "istio-iptables", "-m", "TPROXY", "-x", "not-a-cidr"); code != exitInvalidCaptureInput {
		t.Errorf("invalid input exit %d, want %d", code, exitInvalidCaptureInput)
	}
	if diff := cmp.Diff(before, snapshot(t, ns)); diff != "" {
		t.Errorf("the namespace changed (-before +after):\n%s", diff)
	}
}

func TestIstioIptablesApplyValidateRerunCleanup(t *testing.T) {
	netns.RequireRoot(t, "iptables-nft-restore", "ip")
	ns := netns.New(t)
	ns.MustExec(t, "iptables-nft", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
	args := []string{"istio-iptables", "-m", "TPROXY", "--dual-stack", "--run-validation", "--iptables-probe-timeout", "2s"}

	out, errOut, code := runIn(t, ns, args...)
	if code != 0 || !strings.Contains(out, "validation passed") {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	installed := snapshot(t, ns)
	out, errOut, code = runIn(t, ns, args...)
	if code != 0 || !strings.Contains(out, "changed: nothing") {
		t.Errorf("re-run: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	if diff := cmp.Diff(installed, snapshot(t, ns)); diff != "" {
		t.Errorf("re-run changed the namespace:\n%s", diff)
	}
	if _, errOut, code := runIn(t, ns, "istio-iptables", "--cleanup-only"); code != 0 {
		t.Fatalf("cleanup exit %d: %s", code, errOut)
	}
	after := snapshot(t, ns)
	// Emptied tables stay listed by nft-save only when they were created;
	// compare what matters: no ISTIO rules, foreign rule kept, routes gone.
	if strings.Contains(after, "ISTIO") || strings.Contains(after, "lookup 133") || strings.Contains(after, "table 133") {
		t.Errorf("cleanup left meshlite state:\n%s", after)
	}
	if !strings.Contains(after, "--dport 9999 -j ACCEPT") {
		t.Error("cleanup removed the foreign rule")
	}
	// Validation alone (Istio's istio-validation container) fails loudly
	// once capture is gone.
	_, errOut, code = runIn(t, ns, "istio-iptables", "--skip-rule-apply", "--run-validation", "--iptables-probe-timeout", "300ms")
	if code != 126 || !strings.Contains(errOut, "missing chain nat/ISTIO_OUTPUT") {
		t.Errorf("validation without capture: exit %d, stderr %s", code, errOut)
	}
}

func TestCapturePlanCheckSectionIsYAML(t *testing.T) {
	var buf bytes.Buffer
	if err := capturePlanSection.render(&config.Config{Capture: true}, &buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Capture bool   `json:"capture"`
		Rules   int    `json:"rules"`
		Plan    string `json:"plan"`
	}
	if err := yaml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("section is not YAML: %v\n%s", err, buf.String())
	}
	if !doc.Capture || doc.Rules != 18 || !strings.Contains(doc.Plan, "-A ISTIO_OUTPUT -j ISTIO_REDIRECT") {
		t.Errorf("unexpected section: %+v", doc)
	}
}
