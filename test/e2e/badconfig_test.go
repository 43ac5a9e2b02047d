package e2e

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/test/meshrun"
)

// An invalid VirtualService is rejected as a whole: traffic keeps the last
// good routes, the reason is in istiod-lite's log and metrics, and a later
// good edit applies.
func TestBadConfigEditRejected(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	c := startAll(t, m)
	if _, err := c.WaitReports(ctx(t), 2); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteVirtualService(70, 70); err != nil { // weights must sum to 100
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the rejection in istiod-lite's log", func() bool {
		b, _ := os.ReadFile(m.LogPath("istiod-lite"))
		return strings.Contains(string(b), "config change rejected") && strings.Contains(string(b), "must sum to 100")
	})
	waitFor(t, 10*time.Second, "istiod_config_rejections_total > 0", func() bool {
		return rejections(t, m) > 0
	})
	r, err := c.WaitReports(ctx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, r, "after a rejected edit")
	if r.Window["greeter-v1"] == 0 || r.Window["greeter-v2"] != 0 {
		t.Errorf("after a rejected edit the last second went v1=%d v2=%d; want the last good routes (all to v1)", r.Window["greeter-v1"], r.Window["greeter-v2"])
	}

	if err := m.WriteVirtualService(0, 100); err != nil {
		t.Fatal(err)
	}
	r, err = c.WaitFor(ctx(t), 20*time.Second, "all traffic on v2 after a good edit", func(r meshrun.Report) bool {
		return r.Window["greeter-v2"] > 0 && r.Window["greeter-v1"] == 0
	})
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, r, "after the good edit")
}

// rejections sums istiod_config_rejections_total over its labels.
func rejections(t *testing.T, m *meshrun.Mesh) float64 {
	code, body, err := m.Get(ctx(t), "", m.DebugURL()+"/metrics")
	if err != nil || code != 200 {
		return 0
	}
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "istiod_config_rejections_total") {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
