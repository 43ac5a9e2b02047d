package server

import "github.com/prometheus/client_golang/prometheus"

// metrics use Istio's pilot_* names where the meaning matches, so existing
// dashboards keep working.
type metrics struct {
	connected prometheus.Gauge
	pushes    *prometheus.CounterVec
	rejects   *prometheus.CounterVec
	pushToAck *prometheus.HistogramVec
	genTime   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pilot_xds", Help: "Number of proxies connected to this istiod-lite.",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes", Help: "xDS responses sent, by type.",
		}, []string{"type"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_xds_rejects", Help: "xDS responses a proxy rejected (NACK), by type.",
		}, []string{"type"}),
		pushToAck: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pilot_xds_push_time",
			Help:    "Seconds from setting a proxy's new config version to the proxy ACKing it, by type.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"type"}),
		genTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "istiod_lite_push_generation_seconds",
			Help:    "Seconds to regenerate and set the config of every connected proxy after a registry change.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.pushes, m.rejects, m.pushToAck, m.genTime)
	}
	return m
}
