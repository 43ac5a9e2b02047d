package debug

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlite/meshlite/istiod-lite/model"
	"github.com/meshlite/meshlite/istiod-lite/server"
	"github.com/meshlite/meshlite/istiod-lite/xds"
)

type fakeSource struct {
	ready bool
	snap  *model.Snapshot
	res   map[string]*xds.Resources
}

func (f *fakeSource) Proxies() []server.ProxyStatus {
	return []server.ProxyStatus{{
		ID: "sidecar~10.0.0.1~a.demo~demo.svc.cluster.local", ConnectedAt: time.Unix(0, 0).UTC(), Streams: 1,
		Types: map[string]server.TypeStatus{"cds": {Sent: "v2", Acked: "v1", LastNack: &server.Nack{Version: "v1", Message: "bad cluster"}}},
	}}
}

func (f *fakeSource) ProxyResources(id string) (*xds.Resources, bool) {
	r, ok := f.res[id]
	return r, ok
}
func (f *fakeSource) Snapshot() *model.Snapshot { return f.snap }
func (f *fakeSource) Ready() bool               { return f.ready }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestEndpoints(t *testing.T) {
	const id = "sidecar~10.0.0.1~a.demo~demo.svc.cluster.local"
	snap := &model.Snapshot{
		Version: "abc",
		Services: []*model.Service{{
			Hostname: "greeter.demo.svc.cluster.local", Namespace: "demo", Resolution: model.ResolutionStatic,
			Ports:     []model.Port{{Name: "grpc", Port: 7070, Protocol: model.ProtocolGRPC}},
			Endpoints: []model.Endpoint{{Address: "10.0.0.2", Healthy: true}},
		}},
		Objects: []model.Object{{Kind: "Service", Name: "greeter", Namespace: "demo", Source: model.Source{File: "mesh.yaml"}}},
	}
	p, err := xds.ParseNode(&core.Node{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{snap: snap, res: map[string]*xds.Resources{id: xds.NewGenerator(snap).Generate(p)}}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "istiod_config_rejections_total", Help: "x"})
	reg.MustRegister(c)
	h := Handler(src, Options{Gatherer: reg, RegistryStatus: func() any { return map[string]string{"dir": "/etc/mesh"} }})

	if code, _ := get(t, h, "/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/ready before the registry is ready = %d, want 503", code)
	}
	src.ready = true
	if code, _ := get(t, h, "/ready"); code != http.StatusOK {
		t.Errorf("/ready = %d, want 200", code)
	}

	for _, tc := range []struct {
		path     string
		code     int
		contains []string
	}{
		{"/debug/syncz", 200, []string{id, `"acked": "v1"`, `"message": "bad cluster"`}},
		{"/debug/configz", 200, []string{`"version": "abc"`, "mesh.yaml", `"dir": "/etc/mesh"`}},
		{"/debug/configz?format=yaml", 200, []string{"version: abc", "Kind: Service"}},
		{"/debug/registryz", 200, []string{"greeter.demo.svc.cluster.local", "10.0.0.2"}},
		{"/debug/config_dump?proxyID=" + id, 200, []string{`"lds"`, "0.0.0.0_15001", "outbound|7070||greeter.demo.svc.cluster.local"}},
		{"/debug/config_dump", 400, []string{"proxyID"}},
		{"/debug/config_dump?proxyID=nope", 404, []string{"/debug/syncz"}},
		{"/metrics", 200, []string{"istiod_config_rejections_total 0"}},
	} {
		code, body := get(t, h, tc.path)
		if code != tc.code {
			t.Errorf("%s = %d, want %d: %s", tc.path, code, tc.code, body)
		}
		for _, s := range tc.contains {
			if !strings.Contains(body, s) {
				t.Errorf("%s: body does not contain %q:\n%.2000s", tc.path, s, body)
			}
		}
	}
}
