package status

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type fakeAdmin struct {
	mu       sync.Mutex
	state    string
	cds, lds bool
	err      error
}

func (f *fakeAdmin) ServerState(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state, f.err
}

func (f *fakeAdmin) ConfigReceived(context.Context) (bool, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cds, f.lds, f.err
}

func (f *fakeAdmin) set(fn func(*fakeAdmin)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type fakeHealth struct{ err atomic.Pointer[error] }

func (f *fakeHealth) Health() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

type fakeLifecycle struct{ drains, quits atomic.Int32 }

func (f *fakeLifecycle) Drain() { f.drains.Add(1) }
func (f *fakeLifecycle) Quit()  { f.quits.Add(1) }

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// do serves one request from remote (e.g. "10.1.2.3:5555").
func do(s *Server, method, path, remote string, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = remote
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

const local, remote = "127.0.0.1:40000", "10.1.2.3:40000"

func TestReadinessTransitions(t *testing.T) {
	admin := &fakeAdmin{state: "PRE_INITIALIZING"}
	var certServed, draining atomic.Bool
	xds := &fakeHealth{}
	s := newServer(t, Options{
		Ready: []Check{
			EnvoyLive(admin),
			EnvoyConfigReceived(admin),
			WorkloadCert(certServed.Load, false),
			XDSProxy(xds),
		},
		Draining: draining.Load,
	})
	ready := func() (int, string) {
		rec := do(s, "GET", "/healthz/ready", remote, nil)
		return rec.Code, rec.Body.String()
	}
	steps := []struct {
		name     string
		change   func()
		wantCode int
		want     []string
		notWant  []string
	}{
		{"nothing yet", func() {}, 503,
			[]string{"envoy-live: envoy server.state is PRE_INITIALIZING, not LIVE", "first CDS and LDS", "not yet served to envoy over SDS"}, nil},
		{"envoy live", func() { admin.set(func(a *fakeAdmin) { a.state = "LIVE" }) }, 503,
			[]string{"first CDS and LDS", "workload-cert"}, []string{"envoy-live"}},
		{"CDS only", func() { admin.set(func(a *fakeAdmin) { a.cds = true }) }, 503,
			[]string{"first LDS from the control plane"}, []string{"CDS"}},
		{"LDS too", func() { admin.set(func(a *fakeAdmin) { a.lds = true }) }, 503,
			[]string{"workload-cert"}, []string{"envoy-config"}},
		{"cert served", func() { certServed.Store(true) }, 200, []string{"ready"}, nil},
		{"control plane rejects the agent", func() {
			err := errors.New("control plane rejected the agent with Unauthenticated")
			xds.err.Store(&err)
		}, 503, []string{"xds-proxy: control plane rejected the agent with Unauthenticated"}, nil},
		{"accepted again", func() { xds.err.Store(nil) }, 200, nil, nil},
		{"admin unreachable", func() { admin.set(func(a *fakeAdmin) { a.err = errors.New("connection refused") }) }, 503,
			[]string{"envoy admin unreachable: connection refused"}, nil},
		{"admin back", func() { admin.set(func(a *fakeAdmin) { a.err = nil }) }, 200, nil, nil},
		{"draining", func() { draining.Store(true) }, 503, []string{"draining"}, nil},
	}
	for _, st := range steps {
		st.change()
		code, body := ready()
		if code != st.wantCode {
			t.Errorf("%s: code %d, want %d (body %q)", st.name, code, st.wantCode, body)
		}
		for _, w := range st.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: body %q does not mention %q", st.name, body, w)
			}
		}
		for _, w := range st.notWant {
			if strings.Contains(body, w) {
				t.Errorf("%s: body %q still mentions %q", st.name, body, w)
			}
		}
	}
}

func TestEnvoyAdminFunc(t *testing.T) {
	state := "INITIALIZING"
	f := EnvoyAdminFunc(func(context.Context) (string, bool, bool, error) { return state, true, false, nil })
	s := newServer(t, Options{Ready: []Check{EnvoyLive(f), EnvoyConfigReceived(f)}})
	rec := do(s, "GET", "/healthz/ready", remote, nil)
	if body := rec.Body.String(); rec.Code != 503 || !strings.Contains(body, "INITIALIZING, not LIVE") || !strings.Contains(body, "first LDS") {
		t.Errorf("readiness = %d %q, want 503 naming the state and the missing LDS", rec.Code, body)
	}
}

func TestProxylessReadinessNeedsOnlyTheCert(t *testing.T) {
	var written atomic.Bool
	sdsErr := errors.New("no certificate from the CA yet: CA unreachable")
	s := newServer(t, Options{Ready: []Check{WorkloadCert(written.Load, true), Condition("secret-cache", func() error { return sdsErr })}})
	if rec := do(s, "GET", "/healthz/ready", remote, nil); !strings.Contains(rec.Body.String(), "secret-cache: no certificate from the CA yet: CA unreachable") {
		t.Errorf("body %q does not carry the condition's own reason", rec.Body)
	}
	sdsErr = nil
	rec := do(s, "GET", "/healthz/ready", remote, nil)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "not yet written") {
		t.Errorf("before the cert: %d %q, want 503 naming the missing written cert", rec.Code, rec.Body)
	}
	written.Store(true)
	if rec := do(s, "GET", "/healthz/ready", remote, nil); rec.Code != 200 {
		t.Errorf("after the cert: %d %q, want 200", rec.Code, rec.Body)
	}
}

func TestLifecycleEndpointsAreLocalOnly(t *testing.T) {
	lc := &fakeLifecycle{}
	s := newServer(t, Options{Lifecycle: lc})
	for _, path := range []string{"/quitquitquit", "/drain"} {
		if rec := do(s, "POST", path, remote, nil); rec.Code != http.StatusForbidden {
			t.Errorf("POST %s from %s = %d, want 403", path, remote, rec.Code)
		}
		if rec := do(s, "GET", path, local, nil); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("GET %s = %d, want 405", path, rec.Code)
		}
	}
	if lc.drains.Load() != 0 || lc.quits.Load() != 0 {
		t.Fatal("lifecycle called by a rejected request")
	}
	if rec := do(s, "POST", "/drain", local, nil); rec.Code != 200 || lc.drains.Load() != 1 {
		t.Errorf("POST /drain from localhost = %d, drains %d; want 200 and 1", rec.Code, lc.drains.Load())
	}
	if rec := do(s, "POST", "/quitquitquit", "[::1]:4000", nil); rec.Code != 200 {
		t.Errorf("POST /quitquitquit from ::1 = %d, want 200", rec.Code)
	}
	// Quit runs after the answer is written.
	for deadline := time.Now().Add(5 * time.Second); lc.quits.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Quit was not called")
		}
	}
}

func TestDebugEndpoints(t *testing.T) {
	s := newServer(t, Options{Syncz: func() any { return map[string]any{"upstream": "istiod:15012", "healthy": true} }})
	if rec := do(s, "GET", "/debug/pprof/", remote, nil); rec.Code != http.StatusForbidden {
		t.Errorf("pprof from %s = %d, want 403", remote, rec.Code)
	}
	if rec := do(s, "GET", "/debug/pprof/", local, nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Errorf("pprof from localhost = %d, want 200 with the profile index", rec.Code)
	}
	rec := do(s, "GET", "/debug/syncz", local, nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"upstream": "istiod:15012"`) {
		t.Errorf("syncz = %d %q", rec.Code, rec.Body)
	}
	if rec := do(newServer(t, Options{}), "GET", "/debug/syncz", local, nil); rec.Code != 404 {
		t.Errorf("syncz without a proxy = %d, want 404", rec.Code)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	m := &dto.Metric{}
	if err := c.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestStatsPrometheusMergesSources(t *testing.T) {
	envoy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "# TYPE envoy_server_live gauge\nenvoy_server_live 1\n# TYPE shared gauge\nshared 1\n")
	}))
	defer envoy.Close()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/custom" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
		io.WriteString(w, "# TYPE jobs counter\njobs_total 3\njobs_created 1.6e9\n# TYPE shared counter\nshared_total 1\n# EOF\n")
	}))
	defer app.Close()
	appPort := app.Listener.Addr().(*net.TCPAddr).Port

	reg := prometheus.NewRegistry()
	agentMetric := prometheus.NewGauge(prometheus.GaugeOpts{Name: "istio_agent_up", Help: "Agent is up."})
	agentMetric.Set(1)
	reg.MustRegister(agentMetric)
	s := newServer(t, Options{
		Registerer: reg,
		Metrics: MetricsOptions{
			Gatherer:       reg,
			EnvoyURL:       envoy.URL + "/stats/prometheus",
			AppAnnotations: `{"prometheus.io/scrape":"true","prometheus.io/port":"` + strconv.Itoa(appPort) + `","prometheus.io/path":"/custom"}`,
		},
	})
	rec := do(s, "GET", "/stats/prometheus", remote, nil)
	if rec.Code != 200 {
		t.Fatalf("GET /stats/prometheus = %d %q", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	mustParse(t, rec.Body.Bytes())
	iAgent, iEnvoy, iApp := strings.Index(body, "istio_agent_up 1"), strings.Index(body, "envoy_server_live 1"), strings.Index(body, "jobs_total 3")
	if iAgent < 0 || iEnvoy < 0 || iApp < 0 || !(iAgent < iEnvoy && iEnvoy < iApp) {
		t.Errorf("want agent, then envoy, then application metrics; got:\n%s", body)
	}
	if strings.Contains(body, "jobs_created") || strings.Contains(body, "# EOF") {
		t.Errorf("OpenMetrics-only lines leaked into the text output:\n%s", body)
	}
	if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", rec.Header().Get("Content-Type"))
	}

	// Content negotiation: OpenMetrics when asked for.
	rec = do(s, "GET", "/stats/prometheus", remote, http.Header{"Accept": {"application/openmetrics-text;version=1.0.0"}})
	if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/openmetrics-text") || !strings.HasSuffix(rec.Body.String(), "# EOF\n") {
		t.Errorf("OpenMetrics negotiation: Content-Type %q, body ends %q", rec.Header().Get("Content-Type"), tail(rec.Body.String()))
	}

	// Envoy going away is counted and the rest is still served.
	envoy.Close()
	rec = do(s, "GET", "/stats/prometheus", remote, nil)
	mustParse(t, rec.Body.Bytes())
	if !strings.Contains(rec.Body.String(), "jobs_total 3") {
		t.Errorf("application metrics missing while envoy is down:\n%s", rec.Body)
	}
	if got := counterValue(t, s.merger.failures.WithLabelValues(sourceEnvoy)); got != 1 {
		t.Errorf("scrape_failures_total{source=envoy} = %v, want 1", got)
	}
	// The agent's registry is gathered concurrently with this scrape's own
	// envoy failure, so it shows 1 or 2.
	rec = do(s, "GET", "/stats/prometheus", remote, nil)
	if !regexp.MustCompile(`istio_agent_scrape_failures_total\{source="envoy"\} [12]\n`).MatchString(rec.Body.String()) {
		t.Errorf("failure counter not in the agent's own metrics on the next scrape:\n%s", rec.Body)
	}
}

func tail(s string) string {
	if len(s) > 40 {
		return s[len(s)-40:]
	}
	return s
}

func TestStatsPrometheusCapsASource(t *testing.T) {
	var big bytes.Buffer
	big.WriteString("# TYPE big_gauge gauge\n")
	for i := 0; big.Len() < 4096; i++ {
		big.WriteString("big_gauge{i=\"" + strconv.Itoa(i) + "\"} 1\n")
	}
	envoy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(big.Bytes()) }))
	defer envoy.Close()
	for _, tc := range []struct {
		name   string
		opts   MetricsOptions
		reason string
	}{
		{"bytes", MetricsOptions{EnvoyURL: envoy.URL, MaxBytes: 1000}, dropBytes},
		{"lines", MetricsOptions{EnvoyURL: envoy.URL, MaxLines: 10}, dropLines},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, Options{Metrics: tc.opts})
			rec := do(s, "GET", "/stats/prometheus", remote, nil)
			mustParse(t, rec.Body.Bytes())
			if rec.Body.Len() == 0 || rec.Body.Len() > 1000 {
				t.Errorf("capped output is %d bytes, want some but at most the cap", rec.Body.Len())
			}
			if got := counterValue(t, s.merger.dropped.WithLabelValues(sourceEnvoy, tc.reason)); got != 1 {
				t.Errorf("scrape_dropped_total{source=envoy,reason=%s} = %v, want 1", tc.reason, got)
			}
		})
	}
}

func TestStatsPrometheusTimeout(t *testing.T) {
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(block)
	s := newServer(t, Options{Metrics: MetricsOptions{EnvoyURL: slow.URL, Timeout: time.Minute}})
	// Prometheus' own scrape timeout header bounds the wait.
	rec := do(s, "GET", "/stats/prometheus", remote, http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"0.05"}})
	if rec.Code != 200 {
		t.Fatalf("code %d", rec.Code)
	}
	if got := counterValue(t, s.merger.failures.WithLabelValues(sourceEnvoy)); got != 1 {
		t.Errorf("scrape failures = %v, want 1 after a timeout", got)
	}
}

func TestBadConfigIsRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"probers not JSON", Options{AppProbers: "{"}, "ISTIO_KUBE_APP_PROBERS: not valid JSON"},
		{"named port", Options{AppProbers: `{"/app-health/app/livez":{"httpGet":{"port":"http"}}}`}, "named port"},
		{"two actions", Options{AppProbers: `{"/app-health/app/livez":{"httpGet":{"port":80},"tcpSocket":{"port":80}}}`}, "exactly one is required"},
		{"bad path", Options{AppProbers: `{"/healthz":{"tcpSocket":{"port":80}}}`}, "must start with /app-health/"},
		{"port range", Options{AppProbers: `{"/app-health/a/livez":{"tcpSocket":{"port":70000}}}`}, "port must be a number from 1 to 65535"},
		{"annotations not JSON", Options{Metrics: MetricsOptions{AppAnnotations: "x"}}, "ISTIO_PROMETHEUS_ANNOTATIONS"},
		{"annotation port", Options{Metrics: MetricsOptions{AppAnnotations: `{"port":"abc"}`}}, "must be a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestServeOverRealHTTP(t *testing.T) {
	lc := &fakeLifecycle{}
	s := newServer(t, Options{Lifecycle: lc})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	base := "http://" + l.Addr().String()
	resp, err := http.Get(base + "/healthz/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("ready with no conditions = %d, want 200", resp.StatusCode)
	}
	resp, err = http.Post(base+"/drain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || lc.drains.Load() != 1 {
		t.Errorf("POST /drain over loopback = %d (drains %d), want 200 and 1", resp.StatusCode, lc.drains.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
