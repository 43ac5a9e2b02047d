package xdsproxy

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are named under istio_agent_ so that dashboards built for Istio's
// agent keep finding xDS proxy figures next to Envoy's.
type metrics struct {
	upstreamConnects  prometheus.Counter
	upstreamFailures  *prometheus.CounterVec
	permanentFailures *prometheus.CounterVec
	redials           prometheus.Counter
	streamsActive     *prometheus.GaugeVec
	streamsTotal      *prometheus.CounterVec
	requests          *prometheus.CounterVec
	responses         *prometheus.CounterVec
	nacks             *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "istio_agent", "xds_proxy"
	m := &metrics{
		upstreamConnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "upstream_connects_total", Help: "Upstream ADS streams opened to the control plane (one per downstream stream and reconnect)."}),
		upstreamFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "upstream_failures_total", Help: "Upstream ADS streams that failed, by gRPC code."}, []string{"code"}),
		permanentFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "upstream_permanent_failures_total", Help: "Upstream rejections that retrying will not fix (Unauthenticated, PermissionDenied)."}, []string{"code"}),
		redials: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "trust_bundle_redials_total", Help: "Upstream connections re-dialled because the trust bundle changed."}),
		streamsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "downstream_streams", Help: "Open downstream ADS streams, by mode (sotw, delta)."}, []string{"mode"}),
		streamsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "downstream_streams_total", Help: "Downstream ADS streams accepted, by mode (sotw, delta)."}, []string{"mode"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_total", Help: "Discovery requests received from the downstream, by type."}, []string{"type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "responses_total", Help: "Discovery responses forwarded to the downstream, by type."}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "nacks_total", Help: "Responses the downstream rejected (requests carrying error_detail), by type."}, []string{"type"}),
	}
	if reg != nil {
		reg.MustRegister(m.upstreamConnects, m.upstreamFailures, m.permanentFailures, m.redials,
			m.streamsActive, m.streamsTotal, m.requests, m.responses, m.nacks)
	}
	return m
}

// shortType turns a type URL into a readable, low-cardinality label:
// "type.googleapis.com/envoy.config.cluster.v3.Cluster" → "envoy.config.cluster.v3.Cluster".
func shortType(typeURL string) string {
	if i := strings.LastIndexByte(typeURL, '/'); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}
