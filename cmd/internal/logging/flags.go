package logging

import (
	"io"
	"log/slog"

	"github.com/spf13/pflag"
)

// Options are the logging flags, named and defaulted as Istio's.
type Options struct {
	OutputLevels string // --log_output_level
	JSON         bool   // --log_as_json
}

// DefaultOutputLevels is Istio's default for --log_output_level.
const DefaultOutputLevels = "default:info"

// AddFlags registers --log_output_level and --log_as_json on fs (use a root
// command's PersistentFlags so every subcommand accepts them) and returns the
// Options they fill.
func AddFlags(fs *pflag.FlagSet) *Options {
	o := &Options{}
	fs.StringVar(&o.OutputLevels, "log_output_level", DefaultOutputLevels,
		"Comma-separated minimum per-scope logging level, as <scope>:<level>,<scope>:<level>,... "+
			"A bare level sets the default scope, which also applies to scopes not listed; all:<level> sets every scope. "+
			"Levels: "+AllowedLevels)
	fs.BoolVar(&o.JSON, "log_as_json", false, "Whether to format output as JSON or in plain console-friendly format")
	return o
}

// New builds a logger writing to w from the options, without touching the
// process-wide default. A bad level string is an error naming the scope and
// the allowed levels.
func (o *Options) New(w io.Writer) (*slog.Logger, *Handler, error) {
	levels, err := ParseLevels(o.OutputLevels)
	if err != nil {
		return nil, nil, err
	}
	hopts := &slog.HandlerOptions{Level: acceptAll}
	var inner slog.Handler
	if o.JSON {
		inner = slog.NewJSONHandler(w, hopts)
	} else {
		inner = slog.NewTextHandler(w, hopts)
	}
	h := NewHandler(inner, levels)
	return slog.New(h), h, nil
}

// Setup is New plus slog.SetDefault, for a main's PersistentPreRunE.
func (o *Options) Setup(w io.Writer) (*slog.Logger, error) {
	l, _, err := o.New(w)
	if err != nil {
		return nil, err
	}
	slog.SetDefault(l)
	return l, nil
}
