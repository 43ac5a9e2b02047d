// Package debug serves istiod-lite's debug HTTP endpoints, named as in
// istiod: /debug/syncz, /debug/configz, /debug/config_dump, /debug/registryz,
// plus /metrics and /ready.
package debug

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/meshlite/meshlite/istiod-lite/model"
	"github.com/meshlite/meshlite/istiod-lite/server"
	"github.com/meshlite/meshlite/istiod-lite/xds"
)

// Source is what the debug pages read; *server.Server implements it.
type Source interface {
	Proxies() []server.ProxyStatus
	ProxyResources(id string) (*xds.Resources, bool)
	Snapshot() *model.Snapshot
	Ready() bool
}

// Options configure the handler.
type Options struct {
	Logger *slog.Logger
	// Gatherer serves /metrics; nil uses prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// RegistryStatus, when set, is shown in /debug/configz (last load, last rejected change).
	RegistryStatus func() any
}

// Handler returns the debug mux.
func Handler(src Source, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.DefaultGatherer
	}
	h := &handler{src: src, log: opts.Logger.With("scope", "debug"), status: opts.RegistryStatus}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/syncz", h.syncz)
	mux.HandleFunc("GET /debug/configz", h.configz)
	mux.HandleFunc("GET /debug/config_dump", h.configDump)
	mux.HandleFunc("GET /debug/registryz", h.registryz)
	mux.HandleFunc("GET /ready", h.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	// Go profiles, as istiod serves them on its debug port.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

type handler struct {
	src    Source
	log    *slog.Logger
	status func() any
}

func (h *handler) write(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		h.log.Error("cannot encode debug output", "path", r.URL.Path, "err", err)
		http.Error(w, "cannot encode output: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if r.URL.Query().Get("format") == "yaml" {
		if y, err := yaml.JSONToYAML(b); err == nil {
			w.Header().Set("Content-Type", "application/yaml")
			_, _ = w.Write(y)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

func (h *handler) syncz(w http.ResponseWriter, r *http.Request) { h.write(w, r, h.src.Proxies()) }

func (h *handler) ready(w http.ResponseWriter, _ *http.Request) {
	if !h.src.Ready() {
		http.Error(w, "registry has not loaded its config yet", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// configz is the effective, validated config: what generation reads.
type configz struct {
	Version               string          `json:"version"`
	Objects               []model.Object  `json:"objects"`
	VirtualServices       any             `json:"virtualServices,omitempty"`
	DestinationRules      any             `json:"destinationRules,omitempty"`
	Gateways              any             `json:"gateways,omitempty"`
	Sidecars              any             `json:"sidecars,omitempty"`
	ServiceEntries        any             `json:"serviceEntries,omitempty"`
	WorkloadEntries       any             `json:"workloadEntries,omitempty"`
	PeerAuthentications   any             `json:"peerAuthentications,omitempty"`
	AuthorizationPolicies any             `json:"authorizationPolicies,omitempty"`
	Mesh                  json.RawMessage `json:"mesh,omitempty"`
	Registry              any             `json:"registry,omitempty"`
}

func (h *handler) configz(w http.ResponseWriter, r *http.Request) {
	s := h.src.Snapshot()
	if s == nil {
		http.Error(w, "no config loaded yet", http.StatusServiceUnavailable)
		return
	}
	out := configz{
		Version: s.Version, Objects: s.Objects,
		VirtualServices: nonEmpty(s.VirtualServices), DestinationRules: nonEmpty(s.DestinationRules), Gateways: nonEmpty(s.Gateways),
		Sidecars: nonEmpty(s.Sidecars), ServiceEntries: nonEmpty(s.ServiceEntries), WorkloadEntries: nonEmpty(s.WorkloadEntries),
		PeerAuthentications: nonEmpty(s.PeerAuthentications), AuthorizationPolicies: nonEmpty(s.AuthorizationPolicies),
	}
	if h.status != nil {
		out.Registry = h.status()
	}
	if s.Mesh != nil {
		if b, err := protojson.Marshal(s.Mesh); err == nil {
			out.Mesh = b
		}
	}
	h.write(w, r, out)
}

func (h *handler) registryz(w http.ResponseWriter, r *http.Request) {
	s := h.src.Snapshot()
	if s == nil {
		http.Error(w, "no config loaded yet", http.StatusServiceUnavailable)
		return
	}
	h.write(w, r, s.Services)
}

// configDump is the xDS a proxy is being sent, by short type name (cds, eds, lds, rds).
type configDump struct {
	ProxyID   string                       `json:"proxyID"`
	Versions  map[string]string            `json:"versions"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

func (h *handler) configDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxyID")
	if id == "" {
		http.Error(w, "missing query parameter proxyID: pass a connected proxy's node ID (see /debug/syncz)", http.StatusBadRequest)
		return
	}
	res, ok := h.src.ProxyResources(id)
	if !ok {
		http.Error(w, "proxy "+id+" is not connected: see /debug/syncz for connected proxy IDs", http.StatusNotFound)
		return
	}
	out := configDump{ProxyID: id, Versions: map[string]string{}, Resources: map[string][]json.RawMessage{}}
	for _, t := range xds.TypeURLs {
		st := server.ShortType(t)
		out.Versions[st] = res.Version(t)
		list := []json.RawMessage{}
		for _, r := range res.ByType[t] {
			b, err := protojson.Marshal(r.Message)
			if err != nil {
				h.log.Error("cannot encode resource", "proxy", id, "resource", r.Name, "err", err)
				continue
			}
			list = append(list, b)
		}
		out.Resources[st] = list
	}
	h.write(w, r, out)
}

// nonEmpty keeps empty kinds out of the output (a nil slice in an `any` is not omitted).
func nonEmpty[T any](s []T) any {
	if len(s) == 0 {
		return nil
	}
	return s
}
