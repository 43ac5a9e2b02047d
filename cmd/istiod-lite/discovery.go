package main

import (
	"errors"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshlite/meshlite/cmd/internal/cli"
	"github.com/meshlite/meshlite/istiod-lite/discovery"
)

func init() { register(newDiscoveryCmd) }

func newDiscoveryCmd() *cobra.Command {
	o := &discovery.Options{}
	cmd := &cobra.Command{
		Use:   "discovery",
		Short: "Serve xDS (ADS, SotW and delta) and the CA to sidecars and proxyless gRPC, from a watched config directory or Kubernetes",
		Long: `discovery is istiod-lite's pilot-discovery: it loads Istio-style config from --configDir
(registry File) and/or the API server (registry Kubernetes), validates every change as a
whole (a bad change is rejected and the last good config keeps serving), and serves
per-proxy xDS on --grpcAddr (plaintext) and --secureGRPCAddr (TLS, with the CA), debug
pages and /metrics on --httpAddr, and, with Kubernetes, the admission webhooks on
--webhookAddr. SIGTERM or SIGINT stops it cleanly.

Exit status: 0 on a clean stop; 2 for invalid flags or input files; 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			err := discovery.Run(ctx, o, slog.Default())
			var ce *discovery.ConfigError
			if errors.As(err, &ce) {
				return cli.WithExitCode(2, err)
			}
			return err
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
