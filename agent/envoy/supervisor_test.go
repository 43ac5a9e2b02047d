package envoy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLaunchPassesArgsAndEnv(t *testing.T) {
	r := newRig(t, "FOO=bar")
	r.opts.LogLevel = "info,misc:error"
	r.start(context.Background())
	r.waitReady()

	want, err := Args(r.opts)
	if err != nil {
		t.Fatal(err)
	}
	l := r.launches()
	if len(l) != 1 {
		t.Fatalf("launches = %d, want 1", len(l))
	}
	if diff := cmp.Diff(want, l[0].Args); diff != "" {
		t.Errorf("envoy argv (-want +got):\n%s", diff)
	}
	if !slices.Contains(l[0].Env, "FOO=bar") {
		t.Errorf("env not passed through: %v", l[0].Env)
	}
	if got := r.sup.Admin().Address(); got != r.admin {
		t.Errorf("admin address %q, want %q read from the bootstrap", got, r.admin)
	}

	r.sup.Quit()
	if err := r.result(); err != nil {
		t.Fatalf("Run after Quit = %v, want nil", err)
	}
	if diff := cmp.Diff([]State{StateStarting, StateRunning, StateStopped, StateExited}, r.states()); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	if tr := r.transitions(); tr[len(tr)-1].Crashed {
		t.Error("a requested stop is not a crash")
	}
}

func TestPodModeCrashReturnsExitStatus(t *testing.T) {
	r := newRig(t, "FAKE_ENVOY_CRASH_AFTER_MS=20", "FAKE_ENVOY_EXIT_CODE=3")
	r.start(context.Background())
	err := r.result()
	if err == nil || !strings.Contains(err.Error(), "exited with status 3") {
		t.Fatalf("Run = %v, want the exit status", err)
	}
	<-r.sup.Exited()
	if !errors.Is(r.sup.Err(), err) && r.sup.Err().Error() != err.Error() {
		t.Errorf("Err() = %v", r.sup.Err())
	}
	tr := r.transitions()
	if last := tr[len(tr)-1]; last.To != StateExited || !last.Crashed || last.Backoff != 0 {
		t.Errorf("last transition = %+v, want a crash with no restart", last)
	}
	if len(r.launches()) != 1 {
		t.Error("pod mode must not restart Envoy")
	}
}

func TestPodModeSIGKILLHintsAtOOM(t *testing.T) {
	r := newRig(t, "FAKE_ENVOY_CRASH_AFTER_MS=20", "FAKE_ENVOY_CRASH_SIGNAL=KILL")
	r.start(context.Background())
	err := r.result()
	if err == nil || !strings.Contains(err.Error(), "SIGKILL") || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("Run = %v, want SIGKILL with an OOM hint", err)
	}
}

func TestVMModeRestartsWithBackoffThenGivesUp(t *testing.T) {
	r := newRig(t, "FAKE_ENVOY_CRASH_AFTER_MS=10", "FAKE_ENVOY_EXIT_CODE=2")
	r.opts.Restart = true
	r.opts.MaxConsecutiveCrashes = 4
	r.start(context.Background())

	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		r.waitFor("crash", func() bool { return countCrashes(r.transitions()) == i+1 })
		r.waitTimer()
		tr := r.transitions()
		if got := tr[len(tr)-1].Backoff; got != want {
			t.Fatalf("crash %d: backoff %v, want %v", i+1, got, want)
		}
		// Nothing restarts until the fake clock reaches the backoff.
		r.clock.Step(want - time.Millisecond)
		if n := len(r.launches()); n != i+1 {
			t.Fatalf("restarted before the backoff elapsed (%d launches)", n)
		}
		r.clock.Step(time.Millisecond)
	}
	err := r.result()
	if !errors.Is(err, ErrCrashLoop) || !strings.Contains(err.Error(), "exited with status 2") {
		t.Fatalf("Run = %v, want ErrCrashLoop with the last status", err)
	}
	if n := len(r.launches()); n != 4 {
		t.Errorf("launches = %d, want 4", n)
	}
}

func countCrashes(ts []Transition) int {
	n := 0
	for _, t := range ts {
		if t.Crashed {
			n++
		}
	}
	return n
}

func TestVMModeBackoffCapsAndResetsAfterHealthyUptime(t *testing.T) {
	r := newRig(t)
	r.opts.Restart = true
	r.opts.InitialBackoff = time.Second
	r.opts.MaxBackoff = 3 * time.Second
	r.start(context.Background())

	crash := func(n int) time.Duration {
		r.waitReady()
		r.post("/fake/crash?code=1")
		r.waitFor("crash", func() bool { return countCrashes(r.transitions()) == n })
		r.waitTimer()
		tr := r.transitions()
		d := tr[len(tr)-1].Backoff
		r.clock.Step(d)
		r.waitFor("restart", func() bool { return len(r.launches()) == n+1 })
		r.waitState(StateRunning)
		return d
	}
	if d := crash(1); d != time.Second {
		t.Fatalf("first backoff %v", d)
	}
	if d := crash(2); d != 2*time.Second {
		t.Fatalf("second backoff %v", d)
	}
	if d := crash(3); d != 3*time.Second {
		t.Fatalf("third backoff %v, want capped at 3s", d)
	}
	// Healthy for the reset period: the next crash starts over at 1s.
	r.clock.Step(DefaultHealthyReset)
	if d := crash(4); d != time.Second {
		t.Fatalf("backoff after 5m healthy = %v, want reset to 1s", d)
	}
	r.sup.Shutdown()
	r.sup.Shutdown()
	if err := r.result(); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownDuringBackoffDoesNotRestart(t *testing.T) {
	r := newRig(t, "FAKE_ENVOY_CRASH_AFTER_MS=10")
	r.opts.Restart = true
	r.start(context.Background())
	r.waitFor("crash", func() bool { return countCrashes(r.transitions()) == 1 })
	r.waitTimer()
	r.sup.Shutdown()
	if err := r.result(); err != nil {
		t.Fatal(err)
	}
	if n := len(r.launches()); n != 1 {
		t.Errorf("launches = %d, want 1", n)
	}
}

func TestDrainSequenceSidecar(t *testing.T) {
	r := newRig(t)
	r.opts.TerminationDrainDuration = 5 * time.Second
	r.start(context.Background())
	r.waitReady()

	r.sup.Shutdown()
	r.waitState(StateDraining)
	r.waitFor("drain_listeners", func() bool { return r.hasEvent("drain_listeners") })
	if got := r.eventLines()[0]; got != "drain_listeners inboundonly&graceful" {
		t.Errorf("drain call %q, want inbound-only graceful for a sidecar", got)
	}
	r.waitTimer()
	r.clock.Step(5*time.Second - time.Millisecond)
	if r.sup.State() != StateDraining || r.hasEvent("signal") {
		t.Fatalf("Envoy stopped before terminationDrainDuration: state %v events %q", r.sup.State(), r.eventLines())
	}
	r.clock.Step(time.Millisecond)
	if err := r.result(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if diff := cmp.Diff([]string{"drain_listeners inboundonly&graceful", "signal SIGTERM"}, r.eventLines()); diff != "" {
		t.Errorf("sequence (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]State{StateStarting, StateRunning, StateDraining, StateStopped, StateExited}, r.states()); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
}

func TestDrainRouterDrainsEveryListener(t *testing.T) {
	r := newRig(t)
	r.opts.ProxyType = "router"
	r.start(context.Background())
	r.waitReady()
	r.sup.Shutdown()
	r.waitFor("drain_listeners", func() bool { return r.hasEvent("drain_listeners") })
	if got := r.eventLines()[0]; got != "drain_listeners graceful" {
		t.Errorf("drain call %q, want graceful on every listener for a gateway", got)
	}
}

func TestExitOnZeroActiveConnections(t *testing.T) {
	// Workload traffic on 15006 and 15001; busy excluded listeners (probes,
	// scrapes, admin, status, an internal listener) that must not hold up exit.
	r := newRig(t, "FAKE_ENVOY_CONNECTIONS=0.0.0.0_15006=2,0.0.0.0_15001=1,0.0.0.0_15021=4,0.0.0.0_15090=3,127.0.0.1_15020=1,admin=1,connect_originate=5")
	r.opts.ExitOnZeroActiveConnections = true
	r.opts.MinimumDrainDuration = 10 * time.Second
	r.start(context.Background())
	r.waitReady()

	r.sup.Shutdown()
	r.waitFor("drain_listeners", func() bool { return r.hasEvent("drain_listeners") })
	r.waitTimer()
	r.clock.Step(10*time.Second - time.Millisecond)
	if r.countEvents("stats") != 0 {
		t.Fatal("polled before MINIMUM_DRAIN_DURATION")
	}
	r.clock.Step(time.Millisecond) // first poll: 3 active
	r.waitFor("first poll", func() bool { return r.countEvents("stats") == 1 })
	if q := r.eventLines()[1]; q != "stats usedonly&filter=downstream_cx_active" {
		t.Errorf("poll query %q", q)
	}
	r.waitTimer()
	r.post("/fake/close?listener=0.0.0.0_15006&n=2")
	r.clock.Step(time.Second) // 1 active
	r.waitFor("second poll", func() bool { return r.countEvents("stats") == 2 })
	r.waitTimer()
	if r.hasEvent("signal") {
		t.Fatal("stopped with a connection still open on 15001")
	}
	r.post("/fake/close?listener=0.0.0.0_15001&n=1")
	r.clock.Step(time.Second) // 0 active on the listeners that matter
	if err := r.result(); err != nil {
		t.Fatal(err)
	}
	if got := r.eventLines(); got[len(got)-1] != "signal SIGTERM" {
		t.Errorf("events %q, want SIGTERM last", got)
	}
}

func TestSecondSignalSkipsDrain(t *testing.T) {
	r := newRig(t)
	r.opts.TerminationDrainDuration = time.Hour
	r.start(context.Background())
	r.waitReady()
	r.sup.Shutdown()
	r.waitState(StateDraining)
	r.sup.Shutdown() // no clock step: the drain is cut short
	if err := r.result(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"drain_listeners inboundonly&graceful", "signal SIGTERM"}, r.eventLines()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestDrainThenShutdownExitsImmediately(t *testing.T) {
	r := newRig(t)
	r.opts.TerminationDrainDuration = time.Hour
	r.start(context.Background())
	r.waitReady()
	var lc Lifecycle = r.sup
	lc.Drain()
	r.waitFor("drain", func() bool { return r.hasEvent("drain_listeners") })
	r.waitState(StateDraining)
	if r.clock.HasWaiters() {
		t.Fatal("Drain must not schedule an exit")
	}
	r.sup.Shutdown()
	if err := r.result(); err != nil {
		t.Fatal(err)
	}
	if r.countEvents("drain_listeners") != 1 {
		t.Errorf("drained twice: %q", r.eventLines())
	}
}

func TestQuitSkipsDrainAndKillsAHungEnvoy(t *testing.T) {
	r := newRig(t, "FAKE_ENVOY_HANG_ON_SIGTERM=1")
	r.opts.KillGracePeriod = 7 * time.Second
	r.start(context.Background())
	r.waitReady()
	r.sup.Quit()
	r.waitFor("SIGTERM", func() bool { return r.hasEvent("signal SIGTERM") })
	r.waitTimer()
	r.clock.Step(7*time.Second - time.Millisecond)
	if r.sup.State() != StateStopped {
		t.Fatalf("state %v before the grace period ended", r.sup.State())
	}
	r.clock.Step(time.Millisecond)
	if err := r.result(); err != nil {
		t.Fatal(err)
	}
	if r.hasEvent("drain_listeners") {
		t.Error("Quit must not drain")
	}
	tr := r.transitions()
	last := tr[len(tr)-1]
	if !strings.Contains(last.Status, "SIGKILL") || strings.Contains(last.Status, "OOM") {
		t.Errorf("status %q: want SIGKILL without an OOM hint (the agent sent it)", last.Status)
	}
}

func TestContextCancelStopsEnvoy(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	r.start(ctx)
	r.waitReady()
	cancel()
	if err := r.result(); err != nil {
		t.Fatal(err)
	}
}

func TestPreflightRefusesToLaunch(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "envoy")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(r *rig)
		want   []string
	}{
		{"missing binary", func(r *rig) { r.opts.BinaryPath = filepath.Join(dir, "nope", "envoy") }, []string{"does not exist", "binaryPath"}},
		{"binary not in PATH", func(r *rig) { r.opts.BinaryPath = "envoy-not-installed-here" }, []string{"not in PATH"}},
		{"not executable", func(r *rig) { r.opts.BinaryPath = notExec }, []string{"not executable", "chmod +x " + notExec}},
		{"directory", func(r *rig) { r.opts.BinaryPath = dir }, []string{"is a directory"}},
		{"invalid bootstrap", func(r *rig) {
			if err := os.WriteFile(r.config, []byte(`{"admin": {"address": {"socket_address": {"port_value": 70000}}}}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"admin.address.socket_address.port_value", "65535"}},
		{"unknown field", func(r *rig) {
			if err := os.WriteFile(r.config, []byte(`{"admn": {}}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{`unknown field "admn"`}},
		{"bad log level", func(r *rig) { r.opts.LogLevel = "chatty" }, []string{"chatty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			tc.mutate(r)
			_, err := New(r.opts)
			if !errors.Is(err, ErrPreflight) {
				t.Fatalf("New = %v, want ErrPreflight", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, statErr := os.Stat(r.record); statErr == nil {
				t.Error("Envoy was launched")
			}
			t.Logf("user sees: %v", err)
		})
	}
}

// On a VM the bootstrap can be regenerated between restarts; a broken one
// must stop the restarts instead of crash-looping Envoy on it.
func TestRestartRevalidatesBootstrap(t *testing.T) {
	r := newRig(t)
	r.opts.Restart = true
	r.start(context.Background())
	r.waitReady()
	if err := os.WriteFile(r.config, []byte(`{"admn": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r.post("/fake/crash?code=1")
	r.waitFor("crash", func() bool { return countCrashes(r.transitions()) == 1 })
	r.waitTimer()
	r.clock.Step(time.Second)
	err := r.result()
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "admn") {
		t.Fatalf("Run = %v, want the bootstrap error", err)
	}
	if n := len(r.launches()); n != 1 {
		t.Errorf("launches = %d, want 1", n)
	}
}

func TestAdminReadiness(t *testing.T) {
	r := newRig(t, "FAKE_ENVOY_STATE=PRE_INITIALIZING", "FAKE_ENVOY_XDS=0")
	r.start(context.Background())
	r.waitReady()
	ctx := context.Background()
	rd, err := r.sup.Admin().Readiness(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Ready() {
		t.Fatal("ready while PRE_INITIALIZING with no xDS")
	}
	for _, w := range []string{"PRE_INITIALIZING", "CDS", "LDS"} {
		if !strings.Contains(rd.Missing(), w) {
			t.Errorf("Missing() = %q, want mention of %s", rd.Missing(), w)
		}
	}
	r.post("/fake/state?s=LIVE")
	rd, err = r.sup.Admin().Readiness(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rd.State != "LIVE" || rd.Ready() {
		t.Errorf("readiness %+v: LIVE but still no CDS/LDS", rd)
	}
}

func TestForwardSignals(t *testing.T) {
	r := newRig(t)
	r.opts.TerminationDrainDuration = time.Hour
	r.start(context.Background())
	r.waitReady()
	sigs := make(chan os.Signal, 2)
	go r.sup.ForwardSignals(sigs)
	sigs <- syscall.SIGTERM
	r.waitState(StateDraining)
	sigs <- syscall.SIGINT
	if err := r.result(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"drain_listeners inboundonly&graceful", "signal SIGTERM"}, r.eventLines()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
