package webhook

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/meshlite/meshlite/istiod-lite/config"
)

// Validator is the /validate handler: each Istio object the API server is
// about to store runs through istiod-lite/config, the code behind
// `istiod-lite validate`, and is refused with every problem found.
type Validator struct {
	// Config tunes interpretation (domain suffix); the namespace comes from the request.
	Config config.Options
	Logger *slog.Logger
}

func (v *Validator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := v.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("scope", "validation")
	admit(w, r, log, func(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		if req.Operation == admissionv1.Delete || req.Operation == admissionv1.Connect || len(req.Object.Raw) == 0 {
			return allow()
		}
		if !validatedKinds[req.Kind.Kind] {
			// Istio kinds istiod-lite does not implement (EnvoyFilter,
			// Telemetry, ...) are stored untouched, with a warning for kubectl.
			resp := allow()
			resp.Warnings = []string{fmt.Sprintf("istiod-lite does not implement %s; it is stored but has no effect", req.Kind.Kind)}
			return resp
		}
		msg := ValidateObject(req.Object.Raw, req.Namespace, v.Config)
		if msg == "" {
			return allow()
		}
		log.Info("refused invalid config", "kind", req.Kind.Kind, "namespace", req.Namespace, "name", req.Name, "operation", req.Operation)
		return deny(400, msg)
	})
}

// validatedKinds are the Istio kinds istiod-lite serves, and so validates.
var validatedKinds = map[string]bool{
	config.KindVirtualService: true, config.KindDestinationRule: true, config.KindGateway: true,
	config.KindSidecar: true, config.KindServiceEntry: true, config.KindWorkloadEntry: true,
	config.KindPeerAuthentication: true, config.KindAuthorizationPolicy: true,
}

// ValidateObject validates one object's JSON (or YAML) and returns the
// problems, one per line, or "" when it is valid. Each line is what
// `istiod-lite validate` prints after the file position:
// "<Kind> <ns>/<name>: <field path>: <problem>".
func ValidateObject(raw []byte, namespace string, opts config.Options) string {
	if namespace != "" {
		opts.DefaultNamespace = namespace
	}
	_, errs := config.ParseFile("admission", raw, opts)
	if len(errs) == 0 {
		return ""
	}
	lines := make([]string, 0, len(errs))
	for _, e := range errs {
		lines = append(lines, describe(e))
	}
	return strings.Join(lines, "\n")
}

func describe(e config.Error) string {
	var b strings.Builder
	switch {
	case e.Kind == "":
	case e.Name == "":
		b.WriteString(e.Kind + ": ")
	case e.Namespace == "":
		fmt.Fprintf(&b, "%s %s: ", e.Kind, e.Name)
	default:
		fmt.Fprintf(&b, "%s %s/%s: ", e.Kind, e.Namespace, e.Name)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
