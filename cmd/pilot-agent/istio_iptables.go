package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/cmd/internal/cli"
	"github.com/meshlite/meshlite/iptables"
)

func init() { register(newIstioIptablesCmd) }

// exitInvalidCaptureInput is the status for flags or env that do not
// validate; nothing has been touched when it is returned.
const exitInvalidCaptureInput = 2

// iptablesFlags holds the raw flag values; env fills whatever the command
// line did not set, as Istio's flag.BindEnv does.
type iptablesFlags struct {
	cfg         iptables.CaptureConfig
	dryRun      bool
	cleanupOnly bool
	runValid    bool
	skipApply   bool
	forceBinary string
	resolvConf  string
}

// envBinding maps a flag to the environment variables Istio reads for it,
// first name first.
var envBindings = map[string][]string{
	"envoy-port":                         {"ENVOY_PORT"},
	"inbound-capture-port":               {"INBOUND_CAPTURE_PORT"},
	"inbound-tunnel-port":                {"INBOUND_TUNNEL_PORT"},
	"proxy-uid":                          {"PROXY_UID"},
	"proxy-gid":                          {"PROXY_GID"},
	"istio-inbound-interception-mode":    {"ISTIO_INBOUND_INTERCEPTION_MODE", "INBOUND_INTERCEPTION_MODE"},
	"istio-inbound-tproxy-mark":          {"ISTIO_INBOUND_TPROXY_MARK", "INBOUND_TPROXY_MARK"},
	"istio-inbound-tproxy-route-table":   {"ISTIO_INBOUND_TPROXY_ROUTE_TABLE"},
	"istio-inbound-ports":                {"ISTIO_INBOUND_PORTS"},
	"istio-local-exclude-ports":          {"ISTIO_LOCAL_EXCLUDE_PORTS"},
	"istio-exclude-interfaces":           {"ISTIO_EXCLUDE_INTERFACES"},
	"istio-service-cidr":                 {"ISTIO_SERVICE_CIDR"},
	"istio-service-exclude-cidr":         {"ISTIO_SERVICE_EXCLUDE_CIDR"},
	"istio-outbound-ports":               {"ISTIO_OUTBOUND_PORTS"},
	"istio-local-outbound-ports-exclude": {"ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE"},
	"kube-virt-interfaces":               {"KUBE_VIRT_INTERFACES"},
	"dry-run":                            {"DRY_RUN"},
	"iptables-probe-port":                {"IPTABLES_PROBE_PORT"},
	"iptables-probe-timeout":             {"IPTABLES_PROBE_TIMEOUT", "PROBE_TIMEOUT"},
	"run-validation":                     {"RUN_VALIDATION"},
	"skip-rule-apply":                    {"SKIP_RULE_APPLY"},
	"redirect-dns":                       {"REDIRECT_DNS", "ISTIO_META_DNS_CAPTURE"},
	"drop-invalid":                       {"DROP_INVALID", "INVALID_DROP"},
	"dual-stack":                         {"DUAL_STACK", "ISTIO_DUAL_STACK"},
	"capture-all-dns":                    {"CAPTURE_ALL_DNS"},
	"cleanup-only":                       {"CLEANUP_ONLY"},
	"force-iptables-binary":              {"FORCE_IPTABLES_BINARY"},
}

func addIptablesFlags(fs *pflag.FlagSet) *iptablesFlags {
	f := &iptablesFlags{cfg: iptables.DefaultConfig()}
	c := &f.cfg
	fs.Uint16VarP(&c.ProxyPort, "envoy-port", "p", iptables.DefaultProxyPort, "Envoy port to which all outbound TCP traffic is redirected")
	fs.Uint16VarP(&c.InboundCapturePort, "inbound-capture-port", "z", iptables.DefaultInboundCapturePort, "Port to which all inbound TCP traffic to the pod/VM is redirected")
	fs.Uint16VarP(&c.InboundTunnelPort, "inbound-tunnel-port", "e", iptables.DefaultInboundTunnelPort, "Istio tunnel (HBONE) port, never captured inbound")
	fs.StringVarP(&c.ProxyUID, "proxy-uid", "u", "", "UID(s) whose traffic is not captured (the proxy); default: the UID of $ENVOY_USER (istio-proxy), else 1337")
	fs.StringVarP(&c.ProxyGID, "proxy-gid", "g", "", "GID(s) whose traffic is not captured; default: the proxy UID")
	fs.StringVarP(&c.Mode, "istio-inbound-interception-mode", "m", iptables.ModeRedirect, `Inbound interception mode: "REDIRECT" or "TPROXY"`)
	fs.Uint32VarP(&c.TProxyMark, "istio-inbound-tproxy-mark", "t", iptables.DefaultTProxyMark, "Packet mark used for TPROXY")
	fs.IntVarP(&c.TProxyRouteTable, "istio-inbound-tproxy-route-table", "r", iptables.DefaultTProxyRouteTable, "Policy routing table used for TPROXY")
	fs.StringVarP(&c.InboundPortsInclude, "istio-inbound-ports", "b", "*", `Inbound ports to capture, comma separated; "*" for all, empty for none`)
	fs.StringVarP(&c.InboundPortsExclude, "istio-local-exclude-ports", "d", "", `Inbound ports not captured when -b is "*" (15090, 15021 and 15020 always are)`)
	fs.StringVarP(&c.ExcludeInterfaces, "istio-exclude-interfaces", "c", "", "Interfaces whose inbound and outbound traffic is never captured")
	fs.StringVarP(&c.OutboundIPRangesInclude, "istio-service-cidr", "i", "*", `Outbound CIDRs to capture; "*" for all, empty for none`)
	fs.StringVarP(&c.OutboundIPRangesExclude, "istio-service-exclude-cidr", "x", "", "Outbound CIDRs never captured")
	fs.StringVarP(&c.OutboundPortsInclude, "istio-outbound-ports", "q", "", "Outbound ports captured in addition to -i")
	fs.StringVarP(&c.OutboundPortsExclude, "istio-local-outbound-ports-exclude", "o", "", "Outbound ports never captured")
	fs.StringVarP(&c.KubeVirtInterfaces, "kube-virt-interfaces", "k", "", "Virtual interfaces (VMs) whose inbound traffic is treated as outbound")
	fs.BoolVarP(&f.dryRun, "dry-run", "n", false, "Print the rules and netlink changes without touching the system")
	fs.Uint16Var(&c.ProbePort, "iptables-probe-port", iptables.DefaultProbePort, "Port the validation probe connects to")
	fs.DurationVar(&c.ProbeTimeout, "iptables-probe-timeout", iptables.DefaultProbeTimeout, "How long --run-validation waits for the probe")
	// Newer Istio spells it --probe-timeout; both set the same value.
	fs.DurationVar(&c.ProbeTimeout, "probe-timeout", iptables.DefaultProbeTimeout, "Alias of --iptables-probe-timeout")
	_ = fs.MarkHidden("probe-timeout")
	fs.BoolVar(&f.runValid, "run-validation", false, "After applying, prove capture with a real connection to a validation listener")
	fs.BoolVar(&f.skipApply, "skip-rule-apply", false, "Do not apply rules; with --run-validation this is Istio's istio-validation container")
	fs.BoolVar(&c.RedirectDNS, "redirect-dns", false, "Capture DNS (port 53) to the agent on 15053")
	fs.BoolVar(&c.DropInvalid, "drop-invalid", false, "Drop packets conntrack marks INVALID instead of resetting the connection")
	fs.BoolVar(&c.DualStack, "dual-stack", false, "Install IPv4 and IPv6 capture")
	fs.BoolVar(&c.CaptureAllDNS, "capture-all-dns", false, "With --redirect-dns, capture port 53 to every server, not only those in /etc/resolv.conf")
	fs.BoolVar(&f.cleanupOnly, "cleanup-only", false, "Remove meshlite's capture (chains, jumps, ip rules and routes) and exit")
	fs.StringVar(&f.forceBinary, "force-iptables-binary", "", `Use this backend instead of detecting it: "iptables-legacy" or "iptables-nft"`)
	fs.StringVar(&f.resolvConf, "resolv-conf", "/etc/resolv.conf", "resolv.conf read for --redirect-dns without --capture-all-dns")
	_ = fs.MarkHidden("resolv-conf")
	return f
}

// applyEnv copies each bound environment variable into its flag unless the
// flag was given on the command line, and returns which variable set which
// flag so errors can name it. An invalid value names the variable.
func applyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) (map[string]string, error) {
	from := map[string]string{}
	for name, envs := range envBindings {
		if fs.Changed(name) || name == "iptables-probe-timeout" && fs.Changed("probe-timeout") {
			continue
		}
		for _, env := range envs {
			v, ok := lookup(env)
			if !ok {
				continue
			}
			if err := fs.Set(name, v); err != nil {
				return nil, fmt.Errorf("invalid %s=%q (for --%s): %w", env, v, name, err)
			}
			from[name] = env
			break
		}
	}
	return from, nil
}

// inputError marks an invalid-input error for exit status 2, adding the
// environment variable that supplied the value when it was not a flag.
func inputError(err error, fromEnv map[string]string) error {
	var fe *iptables.FieldError
	if errors.As(err, &fe) {
		for name, env := range fromEnv {
			if strings.HasSuffix(fe.Flag, "--"+name) {
				err = fmt.Errorf("%w (set by environment variable %s)", err, env)
			}
		}
	}
	return cli.WithExitCode(exitInvalidCaptureInput, err)
}

// resolve turns flags and env into a CaptureConfig: defaults the proxy UID
// from ENVOY_USER, reads the loopback CIDR env, the resolvers and IPv6.
func (f *iptablesFlags) resolve(lookup func(string) (string, bool)) (iptables.CaptureConfig, error) {
	c := f.cfg
	if strings.TrimSpace(c.ProxyUID) == "" {
		c.ProxyUID = iptables.DefaultProxyUID
		name := "istio-proxy"
		if v, ok := lookup("ENVOY_USER"); ok && v != "" {
			name = v
		}
		if u, err := user.Lookup(name); err == nil {
			c.ProxyUID = u.Uid
		}
	}
	if v, ok := lookup("ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR"); ok && v != "" {
		c.HostIPv4LoopbackCIDR = v
	}
	if c.RedirectDNS && !c.CaptureAllDNS {
		v4, v6, err := iptables.ResolvConfServers(f.resolvConf)
		if err != nil {
			return c, err
		}
		c.DNSServersV4, c.DNSServersV6 = v4, v6
		if len(v4)+len(v6) == 0 {
			slog.Default().With("scope", "iptables").Warn("--redirect-dns is set without --capture-all-dns and " +
				f.resolvConf + " lists no nameserver: DNS is not captured (as in Istio)")
		}
	}
	if !c.DualStack {
		if v6, err := iptables.DiscoverIPv6(); err == nil {
			c.EnableIPv6 = v6
		}
	}
	return c, c.Validate()
}

func newIstioIptablesCmd() *cobra.Command {
	var f *iptablesFlags
	cmd := &cobra.Command{
		Use:   "istio-iptables",
		Short: "Set up iptables rules for Istio sidecar capture (init container or VM)",
		Long: `istio-iptables installs the traffic capture of a pod or VM: the nat, mangle and raw
rules (chains ISTIO_INBOUND, ISTIO_REDIRECT, ISTIO_IN_REDIRECT, ISTIO_OUTPUT,
ISTIO_DIVERT, ISTIO_TPROXY) and, in TPROXY mode, the policy routes. Flags and
environment variables are Istio's. Re-running converges: an unchanged config
changes nothing, a different one leaves no leftovers.

Exit status: 0 on success; 2 for invalid flags or environment (nothing touched);
126 when --run-validation fails; 1 for other errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runIstioIptables(cmd, f, os.LookupEnv)
		},
	}
	f = addIptablesFlags(cmd.Flags())
	return cmd
}

func runIstioIptables(cmd *cobra.Command, f *iptablesFlags, lookup func(string) (string, bool)) error {
	ctx := cmd.Context()
	fromEnv, err := applyEnv(cmd.Flags(), lookup)
	if err != nil {
		return cli.WithExitCode(exitInvalidCaptureInput, err)
	}
	backend, err := iptables.ParseBackend(f.forceBinary)
	if err != nil {
		return inputError(err, fromEnv)
	}
	cfg, err := f.resolve(lookup)
	if err != nil {
		return inputError(err, fromEnv)
	}
	out := cmd.OutOrStdout()
	if f.dryRun {
		return printPlan(out, cfg, f.cleanupOnly)
	}
	opts := []iptables.Option{iptables.WithLogger(slog.Default()), iptables.WithBackend(backend)}
	if f.cleanupOnly {
		res, err := iptables.Cleanup(ctx, cfg, opts...)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "capture removed (changed: %s)\n", changedSummary(res))
		return nil
	}
	if !f.skipApply {
		res, err := iptables.Install(ctx, cfg, opts...)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "capture installed: %d rules (changed: %s)\n", res.Plan.RuleCount(), changedSummary(res))
	}
	if f.runValid {
		if err := iptables.Validate(ctx, cfg, opts...); err != nil {
			return cli.WithExitCode(iptables.ValidationExitCode, err)
		}
		fmt.Fprintln(out, "validation passed")
	}
	return nil
}

func changedSummary(r iptables.Result) string {
	parts := append([]string{}, r.ChangedTables...)
	if r.RoutesChanged {
		parts = append(parts, "routes")
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ",")
}

func printPlan(w io.Writer, cfg iptables.CaptureConfig, cleanup bool) error {
	if cleanup {
		_, err := fmt.Fprintln(w, "# dry run: --cleanup-only would remove the ISTIO_* chains, rules marked "+
			strconv.Quote(iptables.Marker)+", ip rules and routes with proto "+strconv.Itoa(iptables.RouteProtocol)+" and ::6/128 on lo")
		return err
	}
	p, err := iptables.Build(cfg)
	if err != nil {
		return cli.WithExitCode(exitInvalidCaptureInput, err)
	}
	_, err = fmt.Fprint(w, "# dry run: nothing was changed\n"+iptables.Render(p))
	return err
}

// capturePlanSection is the `pilot-agent check` section showing the capture
// plan that `istio-iptables` (or the agent with --capture) would install with
// the current environment. The lead registers it with registerCheckSection;
// it is a YAML document whose plan is a literal block.
var capturePlanSection = checkSection{
	title:  "iptables plan (istio-iptables with this environment)",
	render: renderCapturePlan,
}

// captureConfigFromEnv resolves the capture config exactly as
// `istio-iptables` does with no flags: defaults, then the ISTIO_* environment.
// The agent uses it for VM mode (--capture: iptables.Install at start,
// iptables.Cleanup at exit) and check uses it for the plan.
func captureConfigFromEnv() (iptables.CaptureConfig, error) {
	fs := pflag.NewFlagSet("istio-iptables", pflag.ContinueOnError)
	f := addIptablesFlags(fs)
	fromEnv, err := applyEnv(fs, os.LookupEnv)
	if err != nil {
		return iptables.CaptureConfig{}, err
	}
	cfg, err := f.resolve(os.LookupEnv)
	if err != nil {
		return cfg, inputError(err, fromEnv)
	}
	return cfg, nil
}

func renderCapturePlan(c *config.Config, w io.Writer) error {
	cfg, err := captureConfigFromEnv()
	if err != nil {
		return err
	}
	p, err := iptables.Build(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "capture: %t\nrules: %d\nplan: |\n", c.Capture, p.RuleCount())
	for _, line := range strings.Split(strings.TrimRight(iptables.Render(p), "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	return nil
}
