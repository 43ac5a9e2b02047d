package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/meshlite/meshlite/cmd/internal/logging"
	"github.com/meshlite/meshlite/cmd/internal/version"
)

// NewRoot builds a binary's root command: Istio's logging flags on every verb
// (the logger is set up before any verb runs), `version`, and the verbs.
func NewRoot(name, short string, verbs []func() *cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         short,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	logOpts := logging.AddFlags(root.PersistentFlags())
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		_, err := logOpts.Setup(cmd.ErrOrStderr())
		return err
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the build version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version.String(name)) },
	})
	for _, v := range verbs {
		root.AddCommand(v())
	}
	return root
}

// Main runs root and exits with the status its error asks for.
func Main(root *cobra.Command) {
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(ExitCode(err))
	}
}
