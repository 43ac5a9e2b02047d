package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshlite/meshlite/agent"
	"github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/cmd/internal/cli"
)

func init() { register(newProxyCmd) }

func newProxyCmd() *cobra.Command {
	var pf *proxyFlags
	cmd := &cobra.Command{
		Use:   "proxy [sidecar|router]",
		Short: "Run the agent for one workload: certificates, xDS proxy, status server, and Envoy (or proxyless gRPC)",
		Long: `proxy is the container entrypoint of the proxy image, as Istio's "pilot-agent proxy".
It loads the configuration (see "check"), gets the workload certificate from the CA and
serves it over SDS, proxies Envoy's ADS stream to the control plane, serves :15020, and
starts Envoy with a validated bootstrap. With DISABLE_ENVOY=true it writes the gRPC xDS
bootstrap and certificate files for a proxyless gRPC application instead.

SIGTERM drains Envoy and exits; a second SIGTERM skips the drain.
Exit status: 0 on a clean shutdown; 2 for an invalid configuration; 1 otherwise
(including Envoy crashing in a pod, so that the kubelet restarts the container).`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{string(config.ProxyTypeSidecar), string(config.ProxyTypeRouter)},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := pf.load(args)
			if err != nil {
				return cli.WithExitCode(exitInvalidConfig, err)
			}
			if c.DryRun {
				return agent.DryRun(c, os.Environ(), cmd.OutOrStdout())
			}
			opts := agent.Options{}
			if c.Capture {
				capture, err := captureConfigFromEnv()
				if err != nil {
					return cli.WithExitCode(exitInvalidConfig, err)
				}
				opts.Capture = &capture
			}
			a, err := agent.New(c, opts)
			if err != nil {
				return err
			}
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)
			return a.Run(cmd.Context(), sigs)
		},
	}
	pf = addProxyFlags(cmd.Flags())
	return cmd
}
