// Command pilot-agent is meshlite's per-pod agent, a drop-in for Istio's pilot-agent.
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
	return cli.NewRoot("pilot-agent", "meshlite pilot-agent: Envoy bootstrap, SDS, xDS proxy, capture and supervision for one workload", verbs)
}

func main() { cli.Main(newRootCmd()) }
