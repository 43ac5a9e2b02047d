package agent

import (
	"fmt"
	"io"
	"strings"

	"github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/agent/envoy"
)

// RenderBootstrap returns what `check` and `proxy --dry-run` show: the
// bootstrap the data plane would start from (Envoy's, or the gRPC one in
// proxyless mode), already validated.
func RenderBootstrap(c *config.Config, environ []string) (title string, data []byte, err error) {
	if c.Envoy.Disabled {
		data, err = RenderGRPCBootstrap(c, environ)
		return "gRPC xDS bootstrap (" + c.Paths.GRPCXDSBootstrap + ")", data, err
	}
	data, err = RenderEnvoyBootstrap(c, environ)
	return "Envoy bootstrap (" + c.Paths.EnvoyBootstrap + ", validated against Envoy's protos)", data, err
}

// DryRun writes the bootstrap and Envoy's command line to w and starts nothing.
func DryRun(c *config.Config, environ []string, w io.Writer) error {
	title, data, err := RenderBootstrap(c, environ)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# %s\n%s\n", title, strings.TrimSpace(string(data)))
	if c.Envoy.Disabled {
		fmt.Fprintln(w, "# Envoy: not started (DISABLE_ENVOY=true, proxyless mode)")
		return nil
	}
	a := &Agent{cfg: c, opts: Options{Environ: environ}}
	o := a.envoyOptions()
	args, err := envoy.Args(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# Envoy command line\n%s %s\n", o.BinaryPath, strings.Join(args, " "))
	return nil
}
