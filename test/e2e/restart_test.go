package e2e

import (
	"testing"
	"time"

	"github.com/meshlite/meshlite/test/meshrun"
)

// istiod-lite dies (SIGKILL) mid-traffic: the apps keep their last config and
// keep calling the endpoints they know; a VirtualService edit made while it is
// down is served once it is back with the same --caDir.
func TestControlPlaneKilledAndRestarted(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	c := startAll(t, m)
	if _, err := c.WaitReports(ctx(t), 2); err != nil {
		t.Fatal(err)
	}

	m.KillControlPlane()
	if err := m.WriteVirtualService(0, 100); err != nil {
		t.Fatal(err)
	}
	r, err := c.WaitReports(ctx(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, r, "with istiod-lite down")
	if r.Window["greeter-v2"] != 0 || r.Window["greeter-v1"] == 0 {
		t.Errorf("with istiod-lite down, last second went v1=%d v2=%d; want the last config (all to v1)", r.Window["greeter-v1"], r.Window["greeter-v2"])
	}

	if err := m.StartControlPlane(ctx(t)); err != nil {
		t.Fatal(err)
	}
	r, err = c.WaitFor(ctx(t), 30*time.Second, "all traffic on v2 after the restart", func(r meshrun.Report) bool {
		return r.Window["greeter-v2"] > 0 && r.Window["greeter-v1"] == 0
	})
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, r, "across the restart")
	for _, w := range m.Options().Workloads {
		if err := m.WaitOK(ctx(t), w.Name, m.StatusURL(w)+"/healthz/ready", 10*time.Second); err != nil {
			t.Errorf("%s's agent is not ready after istiod-lite came back: %v", w.Name, err)
		}
	}
}
