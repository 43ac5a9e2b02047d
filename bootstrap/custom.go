package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"text/template"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Custom selects how the bootstrap is produced. At most one of Template and
// Config is used; Config (a file used as-is) wins.
type Custom struct {
	// Template is the text of a Go text/template (--templateFile), rendered
	// with TemplateData.
	Template string
	// Config is a complete bootstrap used as-is (still validated).
	Config []byte
	// Override is the content of ISTIO_BOOTSTRAP_OVERRIDE (YAML or JSON),
	// merged into the result the way Envoy merges --config-yaml.
	Override []byte
}

// Generate produces the bootstrap Envoy will start from, applying c, and
// validates it. It is what `pilot-agent proxy` and `check` both call.
func Generate(o Options, c Custom) ([]byte, error) {
	var (
		out []byte
		err error
	)
	switch {
	case len(c.Config) > 0:
		out = c.Config
	case c.Template != "":
		out, err = Render(c.Template, o)
	default:
		out, err = Envoy(o)
	}
	if err != nil {
		return nil, err
	}
	if len(c.Override) > 0 {
		if out, err = Merge(out, c.Override); err != nil {
			return nil, err
		}
	}
	if _, err := Validate(out); err != nil {
		return nil, err
	}
	return out, nil
}

// TemplateData is what a custom template sees: the options with defaults
// applied, the computed node, and the default bootstrap's pieces as JSON.
type TemplateData struct {
	Options
	Node         Node
	IPv6         bool
	Loopback     string // "127.0.0.1" or "::1"
	Wildcard     string // "0.0.0.0" or "::"
	MetadataJSON string // the node metadata as a JSON object
	// Default is the generated default bootstrap as JSON, so a template can
	// start from it and change a few fields.
	Default string
}

// Render executes a custom bootstrap template with the same inputs as Envoy.
// Templates can use {{ toJSON .X }} to embed any value as JSON.
func Render(text string, o Options) ([]byte, error) {
	o = o.withDefaults()
	node, err := BuildNode(o)
	if err != nil {
		return nil, err
	}
	// The default is a convenience for templates that start from it; a
	// template that does not use it must not fail on inputs only the
	// default needs (such as the socket paths).
	def, _ := Envoy(o)
	md, err := json.Marshal(node.Metadata)
	if err != nil {
		return nil, fmt.Errorf("encoding node metadata: %w", err)
	}
	data := TemplateData{Options: o, Node: node, IPv6: o.IPv6(), Loopback: "127.0.0.1", Wildcard: "0.0.0.0",
		MetadataJSON: string(md), Default: string(def)}
	if data.IPv6 {
		data.Loopback, data.Wildcard = "::1", "::"
	}
	t, err := template.New("bootstrap").Option("missingkey=error").Funcs(template.FuncMap{
		"toJSON": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
	}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("bootstrap template does not parse: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("bootstrap template failed: %w", err)
	}
	return reindent(buf.Bytes())
}

// Merge applies override (YAML or JSON) onto base as Envoy applies
// --config-yaml: both are parsed as Bootstrap protos and the override is
// proto-merged in (scalars replace, messages merge, repeated fields append).
func Merge(base, override []byte) ([]byte, error) {
	b, err := Parse(base)
	if err != nil {
		return nil, fmt.Errorf("base bootstrap: %w", err)
	}
	oj, err := yaml.YAMLToJSON(override)
	if err != nil {
		return nil, fmt.Errorf("ISTIO_BOOTSTRAP_OVERRIDE is neither YAML nor JSON: %w", err)
	}
	o := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(oj, o); err != nil {
		if _, perr := Parse(oj); perr != nil {
			return nil, fmt.Errorf("ISTIO_BOOTSTRAP_OVERRIDE: %w", perr)
		}
		return nil, fmt.Errorf("ISTIO_BOOTSTRAP_OVERRIDE: %w", err)
	}
	proto.Merge(b, o)
	return Marshal(b)
}

func reindent(raw []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(raw), "", "  "); err != nil {
		return nil, fmt.Errorf("rendered bootstrap is not JSON: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}
