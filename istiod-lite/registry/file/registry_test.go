package file

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

const dr = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

func vs(w1, w2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  http:
  - route:
    - destination: {host: greeter.demo.svc.cluster.local, subset: v1}
      weight: %d
    - destination: {host: greeter.demo.svc.cluster.local, subset: v2}
      weight: %d
`, w1, w2)
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond with a short interval; the deadline only matters when
// the test fails.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type harness struct {
	reg  *Registry
	prom *prometheus.Registry
	done chan error
}

func start(t *testing.T, dir string) *harness {
	t.Helper()
	prom := prometheus.NewRegistry()
	reg, err := New(Options{Dir: dir, Debounce: 20 * time.Millisecond, Registerer: prom, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	reg.reloaded = make(chan struct{}, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{reg: reg, prom: prom, done: make(chan error, 1)}
	go func() { h.done <- reg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, "first load", reg.Ready)
	return h
}

func weights(s *model.Snapshot) string {
	if s == nil || len(s.VirtualServices) == 0 {
		return ""
	}
	var ws []string
	for _, d := range s.VirtualServices[0].Spec.Http[0].Route {
		ws = append(ws, fmt.Sprint(d.Weight))
	}
	return strings.Join(ws, "/")
}

func TestGoodChangeIsApplied(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "dr.yaml"), dr)
	write(t, filepath.Join(dir, "vs.yaml"), vs(100, 0))
	h := start(t, dir)
	first := h.reg.Current()
	if weights(first) != "100/0" {
		t.Fatalf("initial weights %q", weights(first))
	}
	<-h.reg.Changes() // the first load signals too

	write(t, filepath.Join(dir, "vs.yaml"), vs(80, 20))
	select {
	case <-h.reg.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled")
	}
	if got := weights(h.reg.Current()); got != "80/20" {
		t.Errorf("weights after edit %q, want 80/20", got)
	}
	if h.reg.Current().Version == first.Version {
		t.Error("version did not change")
	}

	// A new file in a new subdirectory is picked up.
	write(t, filepath.Join(dir, "more", "pa.yaml"), "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: demo}\nspec: {mtls: {mode: STRICT}}\n")
	eventually(t, "new subdirectory file", func() bool { return len(h.reg.Current().PeerAuthentications) == 1 })

	// Deleting a file removes its objects.
	if err := os.Remove(filepath.Join(dir, "more", "pa.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted file", func() bool { return len(h.reg.Current().PeerAuthentications) == 0 })
}

func TestBadChangeIsRejectedAndLastGoodKeepsServing(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "dr.yaml"), dr)
	write(t, filepath.Join(dir, "vs.yaml"), vs(100, 0))
	h := start(t, dir)
	good := h.reg.Current()

	// Weights sum to 90, and a second file in the same change is fine: the
	// whole change is rejected, nothing half-applied.
	// The bad file is written first so that no reload can see the good one alone.
	write(t, filepath.Join(dir, "vs.yaml"), vs(70, 20))
	write(t, filepath.Join(dir, "pa.yaml"), "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: demo}\nspec: {mtls: {mode: STRICT}}\n")
	rejections := func() float64 { return counterValue(h.reg.rejections) }
	eventually(t, "rejection", func() bool { return rejections() >= 1 })

	if h.reg.Current() != good {
		t.Fatal("snapshot replaced by a rejected change")
	}
	if n := len(h.reg.Current().PeerAuthentications); n != 0 {
		t.Errorf("half-applied: %d PeerAuthentications from the rejected change", n)
	}
	st := h.reg.Status()
	if st.LastError == nil || !strings.Contains(st.LastError.Error(), "vs.yaml:7: doc 0 VirtualService demo/greeter: spec.http[0].route: route weights sum to 90; they must sum to 100") {
		t.Errorf("last error %v", st.LastError)
	}
	if st.Version != good.Version {
		t.Errorf("status version %s, want %s", st.Version, good.Version)
	}
	js, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(js), `"lastError":["`) || !strings.Contains(string(js), `route weights sum to 90`) {
		t.Errorf("status JSON for /debug: %s, %v", js, err)
	}
	if v, err := gathered(h.prom, "istiod_config_rejections_total"); err != nil || v < 1 {
		t.Errorf("istiod_config_rejections_total = %v, %v; want at least 1", v, err)
	}

	// Fixing the file applies everything and clears the error.
	write(t, filepath.Join(dir, "vs.yaml"), vs(70, 30))
	eventually(t, "fix applied", func() bool { return weights(h.reg.Current()) == "70/30" })
	if len(h.reg.Current().PeerAuthentications) != 1 || h.reg.Status().LastError != nil {
		t.Errorf("after fix: %d PA, last error %v", len(h.reg.Current().PeerAuthentications), h.reg.Status().LastError)
	}
}

func TestFirstLoadFailureIsStartupError(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "vs.yaml"), vs(70, 20))
	reg, err := New(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = reg.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "route weights sum to 90") || !strings.Contains(err.Error(), "initial config in "+dir+" is invalid") {
		t.Fatalf("Run = %v, want the validation messages", err)
	}
	if reg.Ready() || reg.Current() != nil {
		t.Error("ready or serving after a failed first load")
	}
	if _, err := New(Options{Dir: filepath.Join(dir, "missing")}); err != nil {
		t.Fatal(err)
	}
}

// Editors save by writing a temporary file and renaming it over the original.
func TestRenameAndReplace(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "dr.yaml"), dr)
	write(t, filepath.Join(dir, "vs.yaml"), vs(100, 0))
	h := start(t, dir)
	for i, w := range []int{90, 50, 10} {
		tmp := filepath.Join(dir, fmt.Sprintf(".vs.yaml.swp%d", i))
		write(t, tmp, vs(w, 100-w))
		if err := os.Rename(tmp, filepath.Join(dir, "vs.yaml")); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%d/%d", w, 100-w)
		eventually(t, "rename to "+want, func() bool { return weights(h.reg.Current()) == want })
	}
}

// A Kubernetes ConfigMap volume: files are symlinks through ..data, which is
// itself a symlink swapped atomically to a new timestamped directory.
func TestConfigMapSymlinkSwaps(t *testing.T) {
	dir := t.TempDir()
	swap := func(i, w int) {
		ts := fmt.Sprintf("..2026_11_22_%02d", i)
		write(t, filepath.Join(dir, ts, "dr.yaml"), dr)
		write(t, filepath.Join(dir, ts, "vs.yaml"), vs(w, 100-w))
		tmpLink := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(ts, tmpLink); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			_ = os.RemoveAll(filepath.Join(dir, fmt.Sprintf("..2026_11_22_%02d", i-1)))
		}
	}
	swap(0, 100)
	for _, f := range []string{"dr.yaml", "vs.yaml"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	h := start(t, dir)
	if got := weights(h.reg.Current()); got != "100/0" {
		t.Fatalf("initial %q (objects must not be read twice through the hidden dirs)", got)
	}
	for i, w := range []int{80, 60, 40, 20} {
		swap(i+1, w)
		want := fmt.Sprintf("%d/%d", w, 100-w)
		eventually(t, "swap "+want, func() bool { return weights(h.reg.Current()) == want })
	}
	if n := counterValue(h.reg.rejections); n != 0 {
		t.Errorf("%v rejections during swaps; a swap must never expose a half state", n)
	}
}

// A burst of writes well inside the debounce window costs one reload.
func TestBurstIsCoalesced(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "dr.yaml"), dr)
	write(t, filepath.Join(dir, "vs.yaml"), vs(100, 0))
	prom := prometheus.NewRegistry()
	reg, err := New(Options{Dir: dir, Debounce: 300 * time.Millisecond, MaxDelay: 10 * time.Second, Registerer: prom, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	reg.reloaded = make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-reg.reloaded // first load
	<-reg.Changes()

	for w := 1; w <= 20; w++ {
		write(t, filepath.Join(dir, "vs.yaml"), vs(w, 100-w))
	}
	select {
	case <-reg.reloaded:
	case <-time.After(5 * time.Second):
		t.Fatal("no reload after the burst")
	}
	if got := weights(reg.Current()); got != "20/80" {
		t.Errorf("weights %q, want the last write 20/80", got)
	}
	select {
	case <-reg.reloaded:
		t.Error("burst caused a second reload")
	default:
	}
	if n := counterValue(reg.reloads); n != 2 {
		t.Errorf("%v reloads, want 2 (initial + one for the burst)", n)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// gathered reads a counter through the Registerer, as /metrics would.
func gathered(g prometheus.Gatherer, name string) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("metric %s not registered", name)
}
