package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/cmd/internal/cli"
)

// TestCheckSections: sections appended by other packages are printed as
// separate YAML documents after the config, and every failing section is
// reported with exit status 2 while the others still print.
func TestCheckSections(t *testing.T) {
	saved := checkSections
	t.Cleanup(func() { checkSections = saved })
	checkSections = []checkSection{{title: "first", render: func(_ *config.Config, w io.Writer) error {
		_, err := io.WriteString(w, "a: 1\n")
		return err
	}}}
	registerCheckSection(checkSection{title: "broken bootstrap", render: func(*config.Config, io.Writer) error { return errors.New("cluster xds-grpc: no endpoints") }})
	registerCheckSection(checkSection{title: "iptables plan", render: func(_ *config.Config, w io.Writer) error {
		_, err := io.WriteString(w, "rules: []\n")
		return err
	}})
	registerCheckSection(checkSection{title: "broken too", render: func(*config.Config, io.Writer) error { return errors.New("bad") }})

	var out bytes.Buffer
	err := runCheckSections(&config.Config{}, &out)
	if want := "# first\na: 1\n---\n# iptables plan\nrules: []\n"; out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	if cli.ExitCode(err) != exitInvalidConfig {
		t.Errorf("exit code %d, want %d", cli.ExitCode(err), exitInvalidConfig)
	}
	for _, s := range []string{"broken bootstrap: cluster xds-grpc: no endpoints", "broken too: bad"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v lacks %q", err, s)
		}
	}
}
