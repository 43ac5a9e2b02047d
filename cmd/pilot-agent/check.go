package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/cmd/internal/cli"
)

func init() { register(newCheckCmd) }

// exitInvalidConfig is check's (and proxy's) status for a configuration that
// does not validate, distinct from 1 (usage or unexpected errors).
const exitInvalidConfig = 2

// checkSection is one part of `check`'s report. Other packages' files append
// theirs with registerCheckSection in init (the rendered bootstrap, the
// iptables plan); sections run only when the config itself is valid.
type checkSection struct {
	title  string
	render func(c *config.Config, w io.Writer) error
}

var checkSections = []checkSection{
	{title: "effective configuration (secrets masked)", render: renderConfig},
}

func registerCheckSection(s checkSection) { checkSections = append(checkSections, s) }

func renderConfig(c *config.Config, w io.Writer) error {
	y, err := c.YAML()
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

func newCheckCmd() *cobra.Command {
	var pf *proxyFlags
	cmd := &cobra.Command{
		Use:   "check [sidecar|router]",
		Short: "Validate the agent configuration and print it, with secrets masked",
		Long: `check loads the configuration exactly as "proxy" would (defaults, mesh config file,
PROXY_CONFIG, pod annotations, environment, flags), validates it, and prints the
effective configuration as YAML with secrets masked. It starts nothing.

Exit status: 0 when valid; 2 with every problem listed when not; 1 on usage errors.`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{string(config.ProxyTypeSidecar), string(config.ProxyTypeRouter)},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := pf.load(args)
			if err != nil {
				return cli.WithExitCode(exitInvalidConfig, err)
			}
			return runCheckSections(c, cmd.OutOrStdout())
		},
	}
	pf = addProxyFlags(cmd.Flags())
	return cmd
}

// runCheckSections writes each section as its own YAML document, so the
// report as a whole stays machine-readable. Every section runs even if an
// earlier one failed, and all failures are reported.
func runCheckSections(c *config.Config, w io.Writer) error {
	var errs []error
	for i, s := range checkSections {
		var buf bytes.Buffer
		if err := s.render(c, &buf); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.title, err))
			continue
		}
		if i > 0 {
			fmt.Fprintln(w, "---")
		}
		fmt.Fprintf(w, "# %s\n", s.title)
		w.Write(buf.Bytes()) //nolint:errcheck // a failing stdout surfaces nowhere better
	}
	if len(errs) > 0 {
		return cli.WithExitCode(exitInvalidConfig, fmt.Errorf("check failed:\n%w", errors.Join(errs...)))
	}
	return nil
}

// proxyFlags are the flags `proxy` and `check` share, named as Istio's
// `pilot-agent proxy` flags, so that check sees exactly what proxy would run.
type proxyFlags struct {
	fs                     *pflag.FlagSet
	domain                 string
	proxyLogLevel          string
	proxyComponentLogLevel string
	concurrency            int
	templateFile           string
	meshConfig             string
	dryRun                 bool
	restartEnvoy           bool
	capture                bool
}

// addProxyFlags registers the proxy flags on fs. Only flags given on the
// command line override the config layers below them, so the defaults shown
// in --help are Istio's but never hide a mesh config or env setting.
func addProxyFlags(fs *pflag.FlagSet) *proxyFlags {
	p := &proxyFlags{fs: fs}
	fs.StringVar(&p.domain, "domain", "", "DNS domain suffix of the proxy; <POD_NAMESPACE>.svc.cluster.local when empty")
	fs.StringVar(&p.proxyLogLevel, "proxyLogLevel", "warning",
		"Envoy log level: trace, debug, info, warning, error, critical, off")
	fs.StringVar(&p.proxyComponentLogLevel, "proxyComponentLogLevel", "misc:error",
		"Envoy per-component log levels, <component>:<level>,...")
	fs.IntVar(&p.concurrency, "concurrency", 0, "Number of Envoy worker threads (0: one per CPU); overrides proxyConfig.concurrency when given")
	fs.StringVar(&p.templateFile, "templateFile", "", "Go template for the Envoy bootstrap (proxyConfig.proxyBootstrapTemplatePath)")
	fs.StringVar(&p.meshConfig, "meshConfig", config.DefaultMeshConfigPath,
		"Mesh config file (MeshConfig YAML); the default path may be absent, a path given here must exist")
	fs.BoolVar(&p.dryRun, "dry-run", false, "Render and validate everything, start nothing")
	fs.BoolVar(&p.restartEnvoy, "restart-envoy", false, "Restart Envoy in place with backoff when it exits, instead of exiting (default true on VMs, false in Kubernetes)")
	fs.BoolVar(&p.capture, "capture", false, "Install traffic capture from the agent itself (VMs; in a pod istio-init does it)")
	return p
}

// options maps the parsed flags onto config.Options, reading the real process
// environment, hostname and interfaces.
func (p *proxyFlags) options(args []string) config.Options {
	o := config.Options{ProxyType: config.ProxyTypeSidecar}
	if len(args) > 0 {
		o.ProxyType = config.ProxyType(args[0])
	}
	str := func(name string, v string) *string {
		if p.fs.Changed(name) {
			return &v
		}
		return nil
	}
	if p.fs.Changed("meshConfig") {
		o.MeshConfigFile = p.meshConfig
	}
	o.Flags = config.Flags{
		Domain:                 str("domain", p.domain),
		ProxyLogLevel:          str("proxyLogLevel", p.proxyLogLevel),
		ProxyComponentLogLevel: str("proxyComponentLogLevel", p.proxyComponentLogLevel),
		TemplateFile:           str("templateFile", p.templateFile),
		DryRun:                 p.dryRun,
	}
	if p.fs.Changed("concurrency") {
		o.Flags.Concurrency = &p.concurrency
	}
	if p.fs.Changed("restart-envoy") {
		o.Flags.RestartEnvoy = &p.restartEnvoy
	}
	if p.fs.Changed("capture") {
		o.Flags.Capture = &p.capture
	}
	return o
}

// load builds and validates the Config for `proxy <type>` or `check <type>`.
func (p *proxyFlags) load(args []string) (*config.Config, error) {
	return config.Load(p.options(args))
}
