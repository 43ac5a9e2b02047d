package ca

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the CA service. The csr_count and success_cert_issuance_count
// names are Istio's, so dashboards built for Citadel keep working.
type metrics struct {
	requests prometheus.Counter
	issued   prometheus.Counter
	denied   *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, a *Authority) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_csr_count",
			Help: "Certificate signing requests received by the CA.",
		}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_success_cert_issuance_count",
			Help: "Workload certificates issued by the CA.",
		}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlite_ca_requests_denied_total",
			Help: "Certificate requests the CA refused, by reason.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshlite_ca_signing_duration_seconds",
			Help:    "Time to sign a workload certificate, from an authorized CSR to the signed chain.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100µs … ~3.3s
		}),
	}
	for _, r := range []string{ReasonUnauthenticated, ReasonMalformedCSR, ReasonBadSignature, ReasonWeakKey,
		ReasonNoSAN, ReasonTTL, ReasonForbiddenSAN, ReasonSignError} {
		m.denied.WithLabelValues(r) // export zeros so that rate() works from the start
	}
	if reg == nil {
		return m, nil
	}
	rootExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "citadel_server_root_cert_expiry_timestamp",
		Help: "Unix time at which the root that new certificates chain to expires.",
	}, func() float64 { return float64(a.SigningRoot().NotAfter.Unix()) })
	for _, c := range []prometheus.Collector{m.requests, m.issued, m.denied, m.latency, rootExpiry} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
