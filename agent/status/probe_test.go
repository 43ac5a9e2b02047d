package status

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// probers builds ISTIO_KUBE_APP_PROBERS JSON.
func probers(t *testing.T, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := port(t, l.Addr().String())
	l.Close()
	return p
}

func TestHTTPProbes(t *testing.T) {
	var gotUA, gotHeader, gotHost string
	app := http.NewServeMux()
	app.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		gotUA, gotHeader, gotHost = r.UserAgent(), r.Header.Get("X-Custom"), r.Host
		fmt.Fprint(w, "fine")
	})
	app.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "db down", 500) })
	app.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	app.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	app.HandleFunc("/redirect-fail", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fail", http.StatusFound) })
	app.HandleFunc("/offsite", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://example.invalid/elsewhere", http.StatusFound)
	})
	app.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	app.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(503)
		w.Write([]byte(strings.Repeat("x", 100<<10)))
	})
	httpSrv := httptest.NewServer(app)
	defer httpSrv.Close()
	httpsSrv := httptest.NewTLSServer(app) // self-signed: kubelet does not verify
	defer httpsSrv.Close()
	hp, sp := port(t, httpSrv.Listener.Addr().String()), port(t, httpsSrv.Listener.Addr().String())

	get := func(path string, p int, scheme string, extra map[string]any) map[string]any {
		g := map[string]any{"path": path, "port": p, "scheme": scheme}
		for k, v := range extra {
			g[k] = v
		}
		return map[string]any{"httpGet": g, "timeoutSeconds": 1}
	}
	s := newServer(t, Options{AppProbers: probers(t, map[string]any{
		"/app-health/web/livez":     get("/ok", hp, "HTTP", map[string]any{"httpHeaders": []map[string]string{{"name": "X-Custom", "value": "v"}, {"name": "Host", "value": "web.local"}}}),
		"/app-health/web/readyz":    get("/fail", hp, "", nil),
		"/app-health/web/startupz":  get("/slow", hp, "HTTP", nil),
		"/app-health/tls/livez":     get("/ok", sp, "HTTPS", nil),
		"/app-health/tls/readyz":    get("/fail", sp, "HTTPS", nil),
		"/app-health/redir/livez":   get("/redirect", hp, "HTTP", nil),
		"/app-health/redir/readyz":  get("/redirect-fail", hp, "HTTP", nil),
		"/app-health/redir/offsite": get("/offsite", hp, "HTTP", nil),
		"/app-health/redir/loop":    get("/loop", hp, "HTTP", nil),
		"/app-health/big/livez":     get("/big", hp, "HTTP", nil),
		"/app-health/down/livez":    get("/ok", closedPort(t), "HTTP", nil),
		// Port as a numeric string, as IntOrString allows.
		"/app-health/str/livez": map[string]any{"httpGet": map[string]any{"path": "ok", "port": strconv.Itoa(hp)}},
	})})

	tests := []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/app-health/web/livez", 200, "fine"},
		{"/app-health/web/readyz", 500, "db down"},
		{"/app-health/web/startupz", 503, "timed out after 1s"},
		{"/app-health/tls/livez", 200, "fine"},
		{"/app-health/tls/readyz", 500, "db down"},
		{"/app-health/redir/livez", 200, "fine"},
		{"/app-health/redir/readyz", 500, "db down"},
		{"/app-health/redir/offsite", 200, ""},
		{"/app-health/redir/loop", 503, "stopped after 10 redirects"},
		{"/app-health/big/livez", 503, ""},
		{"/app-health/down/livez", 503, "connection refused"},
		{"/app-health/str/livez", 200, "fine"},
		{"/app-health/unknown/livez", 404, "no app probe configured"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := do(s, "GET", tt.path, remote, http.Header{"User-Agent": {"kube-probe/1.33"}})
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("GET %s = %d %.200q; want %d containing %q", tt.path, rec.Code, rec.Body.String(), tt.wantCode, tt.wantBody)
			}
			if tt.path == "/app-health/big/livez" && rec.Body.Len() != maxProbeBody {
				t.Errorf("relayed body is %d bytes, want capped at %d", rec.Body.Len(), maxProbeBody)
			}
		})
	}
	do(s, "GET", "/app-health/web/livez", remote, http.Header{"User-Agent": {"kube-probe/1.33"}})
	if gotUA != "kube-probe/1.33" || gotHeader != "v" || gotHost != "web.local" {
		t.Errorf("app saw User-Agent %q, X-Custom %q, Host %q; want kubelet's UA and the probe's headers", gotUA, gotHeader, gotHost)
	}
	do(s, "GET", "/app-health/web/livez", remote, nil)
	if !strings.HasPrefix(gotUA, "kube-probe/") {
		t.Errorf("User-Agent without a kubelet = %q, want kube-probe/*", gotUA)
	}
}

func TestTCPProbes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	s := newServer(t, Options{AppProbers: probers(t, map[string]any{
		"/app-health/db/livez":  map[string]any{"tcpSocket": map[string]any{"port": port(t, l.Addr().String())}},
		"/app-health/db/readyz": map[string]any{"tcpSocket": map[string]any{"port": closedPort(t)}},
	})})
	if rec := do(s, "GET", "/app-health/db/livez", remote, nil); rec.Code != 200 {
		t.Errorf("open port: %d %q, want 200", rec.Code, rec.Body)
	}
	if rec := do(s, "GET", "/app-health/db/readyz", remote, nil); rec.Code != 500 || !strings.Contains(rec.Body.String(), "connection refused") {
		t.Errorf("closed port: %d %q, want 500 naming the refusal", rec.Code, rec.Body)
	}
}

func TestGRPCProbes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("cart", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(l)
	defer srv.Stop()

	// A port that accepts TCP but never speaks HTTP/2: the probe must time out.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	gp := port(t, l.Addr().String())
	s := newServer(t, Options{AppProbers: probers(t, map[string]any{
		"/app-health/api/livez":    map[string]any{"grpc": map[string]any{"port": gp}},
		"/app-health/api/readyz":   map[string]any{"grpc": map[string]any{"port": gp, "service": "cart"}},
		"/app-health/api/startupz": map[string]any{"grpc": map[string]any{"port": gp, "service": "unknown"}},
		"/app-health/hung/livez":   map[string]any{"grpc": map[string]any{"port": port(t, silent.Addr().String())}, "timeoutSeconds": 1},
		"/app-health/down/livez":   map[string]any{"grpc": map[string]any{"port": closedPort(t)}},
	})})
	tests := []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/app-health/api/livez", 200, "SERVING"},
		{"/app-health/api/readyz", 503, "NOT_SERVING"},
		{"/app-health/api/startupz", 503, "NotFound"},
		{"/app-health/hung/livez", 503, "timed out"},
		{"/app-health/down/livez", 503, "failed"},
	}
	for _, tt := range tests {
		rec := do(s, "GET", tt.path, remote, nil)
		if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantBody) {
			t.Errorf("GET %s = %d %q; want %d containing %q", tt.path, rec.Code, rec.Body, tt.wantCode, tt.wantBody)
		}
	}
}
