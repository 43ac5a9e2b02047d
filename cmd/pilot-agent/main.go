// Command pilot-agent is meshlite's per-pod agent, a drop-in for Istio's pilot-agent.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/meshlite/meshlite/cmd/internal/cli"
	"github.com/meshlite/meshlite/cmd/internal/logging"
	"github.com/meshlite/meshlite/cmd/internal/version"
)

// commands holds the constructors of the subcommands; each subcommand file
// registers itself in init so that verbs can be added without editing this file.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "pilot-agent",
		Short:         "meshlite pilot-agent: Envoy bootstrap, SDS, xDS proxy, capture and supervision for one workload",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Istio's logging flags on every verb; the logger is set up before any runs.
	logOpts := logging.AddFlags(root.PersistentFlags())
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		_, err := logOpts.Setup(cmd.ErrOrStderr())
		return err
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the build version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version.String("pilot-agent")) },
	})
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(cli.ExitCode(err))
	}
}
