package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Defaults for /stats/prometheus.
const (
	// DefaultEnvoyStatsURL is where Envoy serves its Prometheus stats in
	// an Istio sidecar (the :15090 listener).
	DefaultEnvoyStatsURL = "http://127.0.0.1:15090/stats/prometheus"
	DefaultScrapeTimeout = 5 * time.Second
	DefaultMaxBytes      = 10 << 20
	DefaultMaxLines      = 500_000
)

// Source names, the "source" label of the scrape counters.
const (
	sourceAgent = "agent"
	sourceEnvoy = "envoy"
	sourceApp   = "application"
)

// MetricsOptions configures the merged Prometheus endpoint.
type MetricsOptions struct {
	// Gatherer supplies the agent's own metrics; nil omits them.
	Gatherer prometheus.Gatherer
	// EnvoyURL is Envoy's Prometheus endpoint (DefaultEnvoyStatsURL in a
	// sidecar); empty omits Envoy (proxyless mode).
	EnvoyURL string
	// AppAnnotations is ISTIO_PROMETHEUS_ANNOTATIONS: JSON with scrape,
	// port and path (bare or prometheus.io/-prefixed keys). Empty, or
	// scrape "false", omits the application.
	AppAnnotations string
	// Timeout bounds each scrape (default 5s); a shorter
	// X-Prometheus-Scrape-Timeout-Seconds from Prometheus wins.
	Timeout time.Duration
	// MaxBytes and MaxLines cap each source (defaults 10 MiB, 500k lines).
	MaxBytes int64
	MaxLines int
	// Client fetches Envoy and the application (default: no keep-alive
	// reuse limits beyond net/http's, no proxy).
	Client *http.Client
}

type merger struct {
	opts     MetricsOptions
	appURL   string
	log      *slog.Logger
	failures *prometheus.CounterVec
	dropped  *prometheus.CounterVec
}

func newMerger(opts MetricsOptions, appHost string, reg prometheus.Registerer, log *slog.Logger) (*merger, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultScrapeTimeout
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxLines <= 0 {
		opts.MaxLines = DefaultMaxLines
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}}
	}
	appURL, err := appMetricsURL(opts.AppAnnotations, appHost)
	if err != nil {
		return nil, err
	}
	m := &merger{
		opts:   opts,
		appURL: appURL,
		log:    log,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_agent_scrape_failures_total",
			Help: "Scrapes of a merged metrics source (agent, envoy, application) that failed.",
		}, []string{"source"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_agent_scrape_dropped_total",
			Help: "Data left out of the merged metrics: scrapes cut at the byte or line cap (reason bytes, lines), families conflicting with an earlier one (conflict), families that did not parse (invalid).",
		}, []string{"source", "reason"}),
	}
	if reg != nil {
		if err := reg.Register(m.failures); err != nil {
			return nil, fmt.Errorf("register status server metrics: %w", err)
		}
		if err := reg.Register(m.dropped); err != nil {
			return nil, fmt.Errorf("register status server metrics: %w", err)
		}
	}
	return m, nil
}

// appMetricsURL reads ISTIO_PROMETHEUS_ANNOTATIONS.
func appMetricsURL(raw, host string) (string, error) {
	if strings.TrimSpace(raw) == "" {
		return "", nil
	}
	var ann map[string]string
	if err := json.Unmarshal([]byte(raw), &ann); err != nil {
		return "", fmt.Errorf(`ISTIO_PROMETHEUS_ANNOTATIONS is not a JSON object of strings such as {"scrape":"true","port":"8080","path":"/metrics"}: %w`, err)
	}
	get := func(k string) string {
		if v, ok := ann["prometheus.io/"+k]; ok {
			return v
		}
		return ann[k]
	}
	if strings.EqualFold(get("scrape"), "false") {
		return "", nil
	}
	port := get("port")
	if port == "" {
		return "", nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("ISTIO_PROMETHEUS_ANNOTATIONS: port %q must be a number in 1-65535 (the prometheus.io/port annotation)", port)
	}
	path := get("path")
	if path == "" {
		path = "/metrics"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// fetched is one source's output: parsed families (the agent's registry)
// or a raw exposition (Envoy, the application).
type fetched struct {
	source      string
	fams        []*dto.MetricFamily
	body        []byte
	contentType string
}

func (m *merger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	timeout := m.opts.Timeout
	if v, err := strconv.ParseFloat(r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"), 64); err == nil && v > 0 {
		if d := time.Duration(v * float64(time.Second)); d < timeout {
			timeout = d
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	type job struct {
		source string
		run    func(context.Context) (fetched, error)
	}
	var jobs []job
	if m.opts.Gatherer != nil {
		jobs = append(jobs, job{sourceAgent, func(context.Context) (fetched, error) {
			// A gatherer may return partial results with an error.
			fams, err := m.opts.Gatherer.Gather()
			return fetched{fams: fams}, err
		}})
	}
	if m.opts.EnvoyURL != "" {
		jobs = append(jobs, job{sourceEnvoy, func(ctx context.Context) (fetched, error) { return m.scrape(ctx, sourceEnvoy, m.opts.EnvoyURL) }})
	}
	if m.appURL != "" {
		jobs = append(jobs, job{sourceApp, func(ctx context.Context) (fetched, error) { return m.scrape(ctx, sourceApp, m.appURL) }})
	}
	results := make([]fetched, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := j.run(ctx)
			if err != nil {
				m.failures.WithLabelValues(j.source).Inc()
				m.log.Warn("metrics source failed; serving the others", "source", j.source, "err", err)
			}
			f.source = j.source
			results[i] = f
		}()
	}
	wg.Wait()

	format := expfmt.NegotiateAccept(r.Header, expfmt.FmtText, expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1)
	w.Header().Set("Content-Type", string(format))
	mw := newMergeWriter(w, format)
	for i, f := range results {
		if f.fams != nil {
			mw.families(f.source, f.fams)
		} else if f.body != nil {
			mw.exposition(f.source, f.body, f.contentType)
		}
		results[i] = fetched{} // let each body go once written
	}
	if err := mw.close(); err != nil {
		m.log.Debug("writing merged metrics failed (scraper gone?)", "err", err)
	}
	for k, n := range mw.dropped {
		if n > 0 {
			m.dropped.WithLabelValues(k[0], k[1]).Add(float64(n))
		}
	}
}

// scrape fetches one HTTP source, reading at most MaxBytes (plus one byte
// to notice the overflow).
func (m *merger) scrape(ctx context.Context, source, url string) (fetched, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fetched{}, fmt.Errorf("scrape %s at %s: %w", source, url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1")
	resp, err := m.opts.Client.Do(req)
	if err != nil {
		return fetched{}, fmt.Errorf("scrape %s at %s: %w", source, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fetched{}, fmt.Errorf("scrape %s at %s: HTTP %d", source, url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, m.opts.MaxBytes+1))
	if err != nil {
		return fetched{}, fmt.Errorf("scrape %s at %s: read body: %w", source, url, err)
	}
	body, cut := capBody(body, m.opts.MaxBytes, m.opts.MaxLines)
	if cut != "" {
		m.dropped.WithLabelValues(source, cut).Inc()
		m.log.Warn("metrics source exceeded its cap and was truncated", "source", source, "cap", cut,
			"max_bytes", m.opts.MaxBytes, "max_lines", m.opts.MaxLines)
	}
	return fetched{body: body, contentType: resp.Header.Get("Content-Type")}, nil
}
