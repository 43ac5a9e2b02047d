package webhook

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
)

// Templates are the injection templates built in; --injectionTemplates (a
// mounted istio-sidecar-injector ConfigMap) can replace them.
//
//go:embed templates/*.yaml
var builtinTemplates embed.FS

// Template names, as in Istio's inject.istio.io/templates annotation.
const (
	TemplateSidecar   = "sidecar"
	TemplateGRPCAgent = "grpc-agent"
)

// templateData is what the templates see.
type templateData struct {
	ProxyImage        string
	ProxyUID          int64
	CAAddr            string
	DomainSuffix      string
	TrustDomain       string
	ClusterID         string
	LogLevel          string
	ProxyConfig       string // JSON
	PodPorts          string // JSON list of the app containers' ports
	AppContainers     string // comma-separated
	AppContainerNames []string
	AppProbers        string // ISTIO_KUBE_APP_PROBERS JSON; empty when nothing to rewrite
	WorkloadName      string
	Owner             string // ISTIO_META_OWNER: the workload's controller, as Istio names it
	LabelsJSON        string // ISTIO_METAJSON_LABELS
	CanonicalName     string
	CanonicalRevision string
	Status            string // sidecar.istio.io/status JSON
	Native            bool
	Proxyless         bool
	// HoldApplication is ProxyConfig holdApplicationUntilProxyStarts: the
	// proxy goes first with a postStart `pilot-agent wait`, so the kubelet
	// starts the app only once the proxy is ready.
	HoldApplication bool
	Capture         capture
}

// capture is the istio-iptables arguments taken from the pod's annotations.
type capture struct {
	IncludeOutboundIPRanges string
	ExcludeOutboundIPRanges string
	IncludeInboundPorts     string
	ExcludeInboundPorts     string
	IncludeOutboundPorts    string
	ExcludeOutboundPorts    string
	ExcludeInterfaces       string
}

// loadTemplates parses every *.yaml of fsys as one template set, so the
// shared definitions ("proxy", "volumes") are available to each template.
func loadTemplates(fsys fs.FS, dir string) (*template.Template, error) {
	t := template.New("").Option("missingkey=error").Funcs(template.FuncMap{
		"quote": func(v any) string {
			b, _ := json.Marshal(fmt.Sprint(v)) // a JSON string is a valid YAML scalar
			return string(b)
		},
	})
	pattern := "*.yaml"
	if dir != "" {
		pattern = dir + "/*.yaml"
	}
	t, err := t.ParseFS(fsys, pattern)
	if err != nil {
		return nil, fmt.Errorf("parsing injection templates: %w", err)
	}
	for _, name := range []string{TemplateSidecar + ".yaml", TemplateGRPCAgent + ".yaml"} {
		if t.Lookup(name) == nil {
			return nil, fmt.Errorf("injection templates lack %s", name)
		}
	}
	return t, nil
}

// LoadTemplates reads the templates from dir (a mounted ConfigMap), or the
// built-in ones when dir is empty.
func LoadTemplates(dir string) (*template.Template, error) {
	if dir == "" {
		return loadTemplates(builtinTemplates, "templates")
	}
	if _, err := os.Stat(filepath.Join(dir, TemplateSidecar+".yaml")); err != nil {
		return nil, fmt.Errorf("--injectionTemplates %s: %w; it must hold sidecar.yaml and grpc-agent.yaml", dir, err)
	}
	return loadTemplates(os.DirFS(dir), "")
}

func render(t *template.Template, name string, d *templateData) ([]byte, error) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name+".yaml", d); err != nil {
		return nil, fmt.Errorf("rendering injection template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// portList joins ports for istio-iptables, with the agent's own ports first
// in the inbound exclusions as Istio does.
func portList(base []int, extra string) string {
	parts := make([]string, 0, len(base)+4)
	for _, p := range base {
		parts = append(parts, strconv.Itoa(p))
	}
	for _, p := range strings.Split(extra, ",") {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ",")
}
