// Command istiod-lite is meshlite's discovery server and CA, paired with pilot-agent.
package main

import (
	"github.com/spf13/cobra"

	"github.com/meshlite/meshlite/cmd/internal/cli"
)

// verbs holds the constructors of the subcommands; each subcommand file
// registers itself in init, so verbs are added without editing this file.
var verbs []func() *cobra.Command

func register(v func() *cobra.Command) { verbs = append(verbs, v) }

func newRootCmd() *cobra.Command {
	return cli.NewRoot("istiod-lite", "meshlite istiod-lite: xDS server, CA and config validation", verbs)
}

func main() { cli.Main(newRootCmd()) }
