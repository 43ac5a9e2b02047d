package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshlite/meshlite/cmd/internal/cli"
	"github.com/meshlite/meshlite/istiod-lite/config"
)

func init() { register(newValidateCmd) }

// newValidateCmd is the offline Galley: it runs exactly the validation the
// file registry applies before accepting a change.
func newValidateCmd() *cobra.Command {
	var opts config.Options
	cmd := &cobra.Command{
		Use:   "validate DIR|FILE...",
		Short: "Validate Istio-style config files offline, as istiod-lite would before accepting them",
		Long: `Validate parses every *.yaml, *.yml and *.json file under the given directories
(recursively) and files, and checks them the way istiod-lite's file registry does:
schema (unknown fields, types, enum values, durations), Istio's semantic rules
(hosts, ports, weights, regexes, ...) and cross-object rules (duplicate names,
subsets defined by a DestinationRule). Each problem is printed on its own line as
file:line: doc N Kind namespace/name: field.path: problem.
Exits 0 when everything is valid, 1 otherwise.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			files, errs := config.ExpandPaths(args)
			var set *config.Set
			if len(errs) == 0 {
				var err error
				set, err = config.LoadFiles(files, opts)
				if err != nil && !errors.As(err, &errs) {
					return cli.WithExitCode(1, err)
				}
			}
			if len(errs) > 0 {
				bad := map[string]bool{}
				for _, e := range errs {
					fmt.Fprintln(out, e.Error())
					bad[e.Source.File] = true
				}
				fmt.Fprintf(out, "%d error(s) in %d of %d file(s)\n", len(errs), len(bad), len(files))
				return cli.WithExitCode(1, fmt.Errorf("validation failed: %d error(s)", len(errs)))
			}
			fmt.Fprintf(out, "%d object(s) in %d file(s) are valid\n", len(set.Objects), len(files))
			return nil
		},
	}
	cmd.Flags().StringVarP(&opts.DefaultNamespace, "namespace", "n", "default", "namespace of objects that do not set metadata.namespace")
	cmd.Flags().StringVar(&opts.DomainSuffix, "domain", "cluster.local", "DNS domain suffix used to complete short hostnames")
	return cmd
}
