package status

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/agent/config"
)

// FuzzAppProbers feeds ISTIO_KUBE_APP_PROBERS, the probe-rewrite JSON that
// injection writes, to the status server's parser and to agent/config's
// validation, which see the same value in the agent: config validates it at
// load, the agent re-encodes it, and the status server parses it again. (The
// seed scheme-ftp once passed config and failed the status server.)
// Properties:
//   - a refusal names the variable, so the operator knows what to fix;
//   - an accepted prober is runnable: a /app-health/ path, one action, a port
//     in 1-65535 and a positive timeout;
//   - parse → JSON → parse gives the same probers;
//   - whatever agent/config accepts, the status server accepts after the
//     agent's re-encoding, with the same paths: otherwise `pilot-agent check`
//     passes and `proxy` fails to start.
//
// Seeds: testdata/fuzz/FuzzAppProbers.
func FuzzAppProbers(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		probers, err := parseAppProbers(raw, "127.0.0.1")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ISTIO_KUBE_APP_PROBERS") {
				t.Fatalf("error does not name ISTIO_KUBE_APP_PROBERS: %v", err)
			}
		} else {
			checkRunnable(t, probers)
			roundTrip(t, probers)
		}
		agreeWithConfig(t, raw, probers, err)
	})
}

func checkRunnable(t *testing.T, probers map[string]*prober) {
	t.Helper()
	for path, p := range probers {
		if !strings.HasPrefix(path, "/app-health/") || p.path != path {
			t.Fatalf("prober %q (path %q) is not under /app-health/", path, p.path)
		}
		n, port := 0, 0
		if p.probe.HTTPGet != nil {
			n, port = n+1, int(p.probe.HTTPGet.Port)
		}
		if p.probe.TCPSocket != nil {
			n, port = n+1, int(p.probe.TCPSocket.Port)
		}
		if p.probe.GRPC != nil {
			n, port = n+1, p.probe.GRPC.Port
		}
		if n != 1 || port < 1 || port > 65535 {
			t.Fatalf("prober %s has %d actions and port %d", path, n, port)
		}
		if p.timeout <= 0 || p.host == "" {
			t.Fatalf("prober %s has timeout %s and host %q", path, p.timeout, p.host)
		}
	}
}

func roundTrip(t *testing.T, probers map[string]*prober) {
	t.Helper()
	m := make(map[string]appProbe, len(probers))
	for path, p := range probers {
		m[path] = p.probe
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("accepted probers cannot be re-encoded: %v", err)
	}
	again, err := parseAppProbers(string(b), "127.0.0.1")
	if err != nil {
		t.Fatalf("re-encoded probers %s are rejected: %v", b, err)
	}
	if !reflect.DeepEqual(again, probers) {
		t.Fatalf("probers do not round-trip through %s", b)
	}
}

// agreeWithConfig loads raw through agent/config as the agent does and
// re-encodes what it accepted, as agent.statusOptions does.
func agreeWithConfig(t *testing.T, raw string, probers map[string]*prober, statusErr error) {
	t.Helper()
	env := config.MapEnv{"POD_NAME": "web-1", "POD_NAMESPACE": "shop", "INSTANCE_IP": "10.1.2.3", "ISTIO_KUBE_APP_PROBERS": raw}
	c, err := config.Load(config.Options{
		WorkDir: t.TempDir(), LookupEnv: env.Lookup, Environ: env.Environ,
		Hostname: func() (string, error) { return "host", nil }, HostIPs: func() []string { return nil },
	})
	if err != nil {
		return // refused at load: the agent never starts the status server with it
	}
	if len(c.App.KubeAppProbers) == 0 {
		if statusErr == nil && len(probers) > 0 {
			t.Fatalf("agent/config dropped probers the status server accepts: %v", keys(probers))
		}
		return // the agent passes nothing on
	}
	b, err := json.Marshal(c.App.KubeAppProbers)
	if err != nil {
		t.Fatalf("agent/config's probers cannot be re-encoded: %v", err)
	}
	reparsed, err := parseAppProbers(string(b), "127.0.0.1")
	if err != nil {
		t.Fatalf("agent/config accepts %s, the status server refuses its re-encoding %s: %v", raw, b, err)
	}
	if got, want := keys(reparsed), keys(c.App.KubeAppProbers); !reflect.DeepEqual(got, want) {
		t.Fatalf("status server probes %v, agent/config accepted %v", got, want)
	}
	for path, p := range reparsed {
		want := time.Second
		if s := c.App.KubeAppProbers[path].TimeoutSeconds; s > 0 {
			want = time.Duration(s) * time.Second
		}
		if p.timeout != want {
			t.Fatalf("%s: status server times out after %s, config says %s", path, p.timeout, want)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
