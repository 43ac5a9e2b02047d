package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlite/meshlite/istiod-lite/xds"
)

// metrics use Istio's pilot_* names where the meaning matches, so existing
// dashboards keep working.
type metrics struct {
	connected prometheus.Gauge
	pushes    *prometheus.CounterVec
	rejects   *prometheus.CounterVec
	pushToAck *prometheus.HistogramVec
	genTime   prometheus.Histogram

	// Children of the per-type vectors for the types generation produces,
	// resolved once: every response and every ACK of a push updates one, and
	// WithLabelValues hashes and locks on each call.
	sentByType map[string]prometheus.Counter
	ackByType  map[string]prometheus.Observer
}

func (m *metrics) sent(typeURL string) prometheus.Counter {
	if c, ok := m.sentByType[typeURL]; ok {
		return c
	}
	return m.pushes.WithLabelValues(ShortType(typeURL))
}

func (m *metrics) ackLatency(typeURL string) prometheus.Observer {
	if o, ok := m.ackByType[typeURL]; ok {
		return o
	}
	return m.pushToAck.WithLabelValues(ShortType(typeURL))
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
	m.sentByType = make(map[string]prometheus.Counter, len(xds.TypeURLs))
	m.ackByType = make(map[string]prometheus.Observer, len(xds.TypeURLs))
	for _, t := range xds.TypeURLs {
		m.sentByType[t] = m.pushes.WithLabelValues(ShortType(t))
		m.ackByType[t] = m.pushToAck.WithLabelValues(ShortType(t))
	}
	return m
}
