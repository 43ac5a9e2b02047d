package e2e

import (
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/test/meshrun"
)

// The CA is down when certificates are due for rotation: the old certificates
// keep serving until they expire, readiness says what is going on (ready while
// the certificate is valid, not ready once it has expired), and everything
// recovers once the CA is back.
func TestCAUnavailableAtRotation(t *testing.T) {
	t.Parallel()
	const ttl = 20 * time.Second
	m := newMesh(t, "SECRET_TTL="+ttl.String())
	c := startAll(t, m)
	w := workload(t, m, "client")
	first := m.Cert(w)
	if _, err := c.WaitFor(ctx(t), 10*time.Second, "traffic flowing", func(r meshrun.Report) bool { return r.OK >= 10 }); err != nil {
		t.Fatal(err)
	}
	m.KillControlPlane()

	waitFor(t, ttl, "the agent's failed rotation", func() bool {
		b, _ := os.ReadFile(m.LogPath(w.Name + "-agent"))
		return strings.Contains(string(b), "cannot get a workload certificate; retrying")
	})
	if cur := m.Cert(w); cur.Serial != first.Serial {
		t.Fatalf("OUTPUT_CERTS changed while the CA was down: serial %s, then %s", first.Serial, cur.Serial)
	}
	if code, body := ready(t, m, w); code != http.StatusOK {
		t.Errorf("readiness with a valid certificate and the CA down = %d %q; want 200 (the workload still serves)", code, body)
	}
	// Before the old certificates expire, not one RPC may fail.
	r, err := c.WaitFor(ctx(t), ttl, "a report just before expiry", func(r meshrun.Report) bool {
		return time.Until(first.NotAfter) < 1500*time.Millisecond
	})
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, r, "while the CA was down and the certificates valid")

	time.Sleep(time.Until(first.NotAfter) + time.Second) // cannot poll the wall clock forward
	code, body := ready(t, m, w)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "expired") {
		t.Errorf("readiness with an expired certificate and the CA down = %d %q; want 503 saying it expired", code, body)
	}

	logBefore, _ := os.ReadFile(m.LogPath("istiod-lite"))
	if err := m.StartControlPlane(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// The agents retry with capped exponential backoff (up to 30s).
	for _, wl := range m.Options().Workloads {
		if err := m.WaitOK(ctx(t), wl.Name, m.StatusURL(wl)+"/healthz/ready", 45*time.Second); err != nil {
			t.Fatalf("%s's agent did not recover after the CA came back: %v", wl.Name, err)
		}
	}
	if serials := slices.Compact(m.IssuedSerials(w)); len(serials) < 2 || m.Cert(w).Serial == first.Serial {
		t.Errorf("no new certificate after the CA came back: issued %v, OUTPUT_CERTS serial %s", serials, m.Cert(w).Serial)
	}
	// The agents' xDS streams come back too (their upstream backoff is capped
	// at 15s), so that a newly started app gets its config.
	waitFor(t, 40*time.Second, "every agent's xDS stream back at istiod-lite", func() bool {
		b, _ := os.ReadFile(m.LogPath("istiod-lite"))
		after := string(b[min(len(logBefore), len(b)):])
		for _, wl := range m.Options().Workloads {
			if !strings.Contains(after, "proxy connected") || !strings.Contains(after, "~"+wl.IP+"~") {
				return false
			}
		}
		return true
	})
	// New connections need the renewed certificates on both sides.
	late, err := m.StartClientAs("late-client", w, meshrun.SPIFFEID("greeter"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.WaitFor(ctx(t), 20*time.Second, "a second of RPCs without failure", func(r meshrun.Report) bool {
		return r.WindowFailed == 0 && r.Window["greeter-v1"]+r.Window["greeter-v2"] >= 10
	}); err != nil {
		t.Fatal(err)
	}
}

func ready(t *testing.T, m *meshrun.Mesh, w meshrun.Workload) (int, string) {
	t.Helper()
	code, body, err := m.Get(ctx(t), w.Name, m.StatusURL(w)+"/healthz/ready")
	if err != nil {
		t.Fatalf("%s readiness: %v", w.Name, err)
	}
	return code, body
}
