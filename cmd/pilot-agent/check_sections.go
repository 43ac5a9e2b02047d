package main

import (
	"io"
	"os"

	"github.com/meshlite/meshlite/agent"
	"github.com/meshlite/meshlite/agent/config"
)

// The sections `check` prints after the effective configuration, in order.
func init() {
	registerCheckSection(checkSection{title: "bootstrap", render: renderBootstrap})
	registerCheckSection(capturePlanSection)
}

func renderBootstrap(c *config.Config, w io.Writer) error {
	// The environment is masked: ISTIO_META_* values become node metadata.
	title, data, err := agent.RenderBootstrap(c, config.MaskEnviron(os.Environ()))
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "# "+title+"\n"+string(data)+"\n")
	return err
}
