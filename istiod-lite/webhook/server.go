package webhook

import (
	"net/http"
)

// DefaultPort is where istiod serves its webhooks (the istiod Service maps 443 to it).
const DefaultPort = 15017

// Paths of the webhooks.
const (
	PathValidate = "/validate"
	PathInject   = "/inject"
)

// Handler routes /validate and /inject; a nil handler is not served. Serve
// it over TLS with the CA's serving certificate (ca.Authority.ServerTLSConfig)
// and patch the CA's bundle into the configurations with PatchCABundle.
func Handler(v *Validator, in *Injector) http.Handler {
	mux := http.NewServeMux()
	if v != nil {
		mux.Handle(PathValidate, v)
	}
	if in != nil {
		mux.Handle(PathInject, in)
	}
	return mux
}
