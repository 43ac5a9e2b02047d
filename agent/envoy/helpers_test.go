package envoy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshlite/meshlite/bootstrap"
)

// fakeEnvoy is the path of the fake-envoy binary built once for the package.
var fakeEnvoy string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fake-envoy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeEnvoy = filepath.Join(dir, "fake-envoy")
	build := exec.Command("go", "build", "-o", fakeEnvoy, "./testdata/fake-envoy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building testdata/fake-envoy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// rig is one supervised fake Envoy with its files, clock and observations.
type rig struct {
	t       *testing.T
	dir     string
	config  string
	record  string
	events  string
	admin   string
	clock   *testingclock.FakeClock
	opts    Options
	sup     *Supervisor
	runErr  chan error
	mu      sync.Mutex
	history []Transition
	logs    *bytes.Buffer
}

// newRig writes a real generated bootstrap whose admin port is free, and
// options that launch fake-envoy with the given extra environment.
func newRig(t *testing.T, env ...string) *rig {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	data, err := bootstrap.Envoy(bootstrap.Options{
		InstanceIPs: []string{"10.0.0.1"},
		PodName:     "app-1",
		Namespace:   "default",
		AdminPort:   port,
		XDSSocket:   filepath.Join(dir, "XDS"),
		SDSSocket:   filepath.Join(dir, "SDS"),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{
		t:      t,
		dir:    dir,
		config: filepath.Join(dir, "envoy-rev.json"),
		record: filepath.Join(dir, "record.jsonl"),
		events: filepath.Join(dir, "events.log"),
		admin:  fmt.Sprintf("127.0.0.1:%d", port),
		clock:  testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		runErr: make(chan error, 1),
		logs:   &bytes.Buffer{},
	}
	if err := os.WriteFile(r.config, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r.opts = Options{
		BinaryPath: fakeEnvoy,
		ConfigPath: r.config,
		Env:        append([]string{"FAKE_ENVOY_RECORD=" + r.record, "FAKE_ENVOY_EVENTS=" + r.events}, env...),
		Stdout:     io.Discard,
		Stderr:     io.Discard,
		CPULimit:   func() float64 { return 2 },
		Clock:      r.clock,
		Logger:     slog.New(slog.NewTextHandler(&lockedWriter{w: r.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	return r
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// start creates the supervisor and runs it; Run's result goes to r.runErr.
func (r *rig) start(ctx context.Context) {
	r.t.Helper()
	sup, err := New(r.opts)
	if err != nil {
		r.t.Fatalf("New: %v", err)
	}
	r.sup = sup
	sup.Observe(func(tr Transition) {
		r.mu.Lock()
		r.history = append(r.history, tr)
		r.mu.Unlock()
	})
	go func() { r.runErr <- sup.Run(ctx) }()
	r.t.Cleanup(func() {
		sup.Quit()
		select {
		case <-sup.Exited():
		case <-time.After(10 * time.Second):
			r.t.Error("supervisor did not exit on cleanup")
		}
	})
}

func (r *rig) transitions() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Transition(nil), r.history...)
}

func (r *rig) states() []State {
	var out []State
	for _, tr := range r.transitions() {
		out = append(out, tr.To)
	}
	return out
}

// waitFor polls cond; tests use it only where a real process must act.
func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s; states %v; events %q; log:\n%s", what, r.states(), r.eventLines(), r.logs.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitReady waits until the current fake Envoy answers on its admin port.
func (r *rig) waitReady() {
	r.t.Helper()
	r.waitFor("fake envoy admin", func() bool {
		resp, err := http.Get("http://" + r.admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

func (r *rig) waitState(s State) {
	r.t.Helper()
	r.waitFor("state "+s.String(), func() bool { return r.sup.State() == s })
}

func (r *rig) waitTimer() {
	r.t.Helper()
	r.waitFor("a timer on the fake clock", r.clock.HasWaiters)
}

func (r *rig) eventLines() []string {
	data, _ := os.ReadFile(r.events)
	s := strings.TrimSpace(string(data))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (r *rig) hasEvent(prefix string) bool {
	for _, e := range r.eventLines() {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

func (r *rig) countEvents(prefix string) int {
	n := 0
	for _, e := range r.eventLines() {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

type launchRecord struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
}

func (r *rig) launches() []launchRecord {
	data, _ := os.ReadFile(r.record)
	var out []launchRecord
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var lr launchRecord
		if err := json.Unmarshal([]byte(line), &lr); err != nil {
			r.t.Fatalf("record line %q: %v", line, err)
		}
		out = append(out, lr)
	}
	return out
}

func (r *rig) post(path string) {
	r.t.Helper()
	resp, err := http.Post("http://"+r.admin+path, "", nil)
	if err != nil {
		// A crash request may lose its response to the crash; the test
		// checks the crash itself through the transitions.
		if strings.HasPrefix(path, "/fake/crash") {
			return
		}
		r.t.Fatalf("POST %s: %v", path, err)
	}
	resp.Body.Close()
}

func (r *rig) result() error {
	r.t.Helper()
	select {
	case err := <-r.runErr:
		return err
	case <-time.After(10 * time.Second):
		r.t.Fatalf("Run did not return; states %v; events %q", r.states(), r.eventLines())
		return nil
	}
}
