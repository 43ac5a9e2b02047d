package envoy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"
)

// Lifecycle is what the status server's /quitquitquit and /drain call.
type Lifecycle interface {
	// Quit stops Envoy now, without draining, and ends Run.
	Quit()
	// Drain drains Envoy's listeners and keeps it running (a native
	// sidecar's preStop); a later Shutdown then stops Envoy immediately.
	Drain()
}

// ErrCrashLoop is returned by Run in VM mode when Envoy keeps crashing.
var ErrCrashLoop = errors.New("envoy is crash-looping")

// Supervisor runs one Envoy (and its restarts, in VM mode).
type Supervisor struct {
	opts   Options
	log    *slog.Logger
	clock  clock.WithTicker
	admin  *Admin
	binary string
	cmds   chan command
	exited chan struct{}
	ran    atomic.Bool

	mu        sync.Mutex
	state     State
	observers []Observer
	err       error
}

type command int

const (
	cmdShutdown command = iota
	cmdQuit
	cmdDrain
)

// New checks that Envoy can be launched (binary, bootstrap) and returns a
// Supervisor. Errors wrap ErrPreflight and name the path and the fix.
func New(opts Options) (*Supervisor, error) {
	opts = opts.withDefaults()
	if _, err := Args(opts); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	bin, err := resolveBinary(opts.BinaryPath)
	if err != nil {
		return nil, err
	}
	adminAddr, err := checkBootstrap(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if opts.AdminAddress != "" {
		adminAddr = opts.AdminAddress
	}
	if adminAddr == "" {
		adminAddr = "127.0.0.1:15000"
	}
	return &Supervisor{
		opts:   opts,
		log:    opts.Logger,
		clock:  opts.Clock,
		admin:  NewAdmin(adminAddr),
		binary: bin,
		cmds:   make(chan command, 16),
		exited: make(chan struct{}),
	}, nil
}

// Admin is a client of the supervised Envoy's admin API.
func (s *Supervisor) Admin() *Admin { return s.admin }

// Observe registers an observer of state transitions; call it before Run.
func (s *Supervisor) Observe(o Observer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observers = append(s.observers, o)
}

// State is the current state.
func (s *Supervisor) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Exited is closed when Run has returned: Envoy is gone and will not be
// restarted. Err then holds Run's result.
func (s *Supervisor) Exited() <-chan struct{} { return s.exited }

// Err is Run's result once Exited is closed.
func (s *Supervisor) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Shutdown is what SIGTERM and SIGINT do. The first call drains then stops
// Envoy; a second call (or one after Drain) skips what is left of the drain;
// a call while Envoy is already stopping kills it.
func (s *Supervisor) Shutdown() { s.send(cmdShutdown) }

// Quit implements Lifecycle.
func (s *Supervisor) Quit() { s.send(cmdQuit) }

// Drain implements Lifecycle.
func (s *Supervisor) Drain() { s.send(cmdDrain) }

func (s *Supervisor) send(c command) {
	select {
	case s.cmds <- c:
	default:
		// The queue only fills if a caller spams signals; the ones queued
		// already escalate to a kill.
	}
}

func (s *Supervisor) transition(t Transition) {
	s.mu.Lock()
	t.From = s.state
	s.state = t.To
	obs := append([]Observer(nil), s.observers...)
	s.mu.Unlock()
	s.log.Debug("envoy state", "from", t.From, "to", t.To, "pid", t.PID)
	for _, o := range obs {
		o(t)
	}
}

// Run launches Envoy and supervises it (once per Supervisor) until it is stopped (nil), crashes
// in pod mode (an error describing the exit), or crash-loops in VM mode
// (ErrCrashLoop). Cancelling ctx stops Envoy as Quit does.
func (s *Supervisor) Run(ctx context.Context) (err error) {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("envoy supervisor: Run called twice; create a new Supervisor")
	}
	defer func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.exited)
	}()
	var crashes, starts int
	for {
		// The bootstrap is re-checked before every launch: on a VM it may
		// have been regenerated since the last one.
		if _, err := resolveBinary(s.binary); err != nil {
			return err
		}
		if _, err := checkBootstrap(s.opts.ConfigPath); err != nil {
			return err
		}
		p, err := s.launch(starts + 1)
		if err != nil {
			return err
		}
		starts++
		out := s.supervise(ctx, p)
		t := Transition{To: StateExited, PID: p.pid, Status: out.status, Crashed: out.crashed, Starts: starts}
		if !out.crashed {
			s.transition(t)
			s.log.Info("envoy exited", "pid", p.pid, "status", out.status)
			return nil
		}
		if !s.opts.Restart {
			s.transition(t)
			s.log.Error("envoy exited unexpectedly", "pid", p.pid, "status", out.status)
			return fmt.Errorf("envoy (pid %d) %s", p.pid, out.status)
		}
		if out.uptime >= s.opts.HealthyReset {
			crashes = 0
		}
		crashes++
		if crashes >= s.opts.MaxConsecutiveCrashes {
			s.transition(t)
			s.log.Error("envoy crash loop, giving up", "crashes", crashes, "status", out.status)
			return fmt.Errorf("%w: %d crashes in a row, the last one %s; fix the cause logged above and restart the agent", ErrCrashLoop, crashes, out.status)
		}
		delay := s.backoff(crashes)
		t.Backoff = delay
		s.transition(t)
		s.log.Warn("envoy exited unexpectedly, restarting", "pid", p.pid, "status", out.status, "uptime", out.uptime, "crashes", crashes, "backoff", delay)
		if !s.waitBackoff(ctx, delay) {
			return nil
		}
	}
}

// backoff doubles from InitialBackoff per consecutive crash, up to MaxBackoff.
func (s *Supervisor) backoff(crashes int) time.Duration {
	d := s.opts.InitialBackoff
	for i := 1; i < crashes && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.opts.MaxBackoff)
}

// waitBackoff waits before a restart; false means a shutdown came first.
func (s *Supervisor) waitBackoff(ctx context.Context, d time.Duration) bool {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C():
			return true
		case <-ctx.Done():
			return false
		case c := <-s.cmds:
			if c != cmdDrain {
				return false
			}
		}
	}
}

type process struct {
	pid     int
	started time.Time
	done    chan *os.ProcessState
}

func (s *Supervisor) launch(n int) (*process, error) {
	args, err := Args(s.opts)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.binary, args...)
	cmd.Env = s.opts.Env
	cmd.Stdout, cmd.Stderr = s.opts.Stdout, s.opts.Stderr
	// Own process group: signals reach Envoy and anything it spawns, and a
	// Ctrl-C on the agent's terminal goes through the agent's drain instead.
	// Pdeathsig: if the agent dies, Envoy must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s.transition(Transition{To: StateStarting, Starts: n})
	done := make(chan *os.ProcessState, 1)
	startErr := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the *thread* that forked Envoy exits, and Go
		// ends a thread when a goroutine locked to it returns (netns code
		// does this on purpose). Keeping the forking thread locked to this
		// goroutine until Envoy exits means no such goroutine can own it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		_ = cmd.Wait() // the exit status is in ProcessState
		done <- cmd.ProcessState
	}()
	if err := <-startErr; err != nil {
		s.transition(Transition{To: StateExited, Status: err.Error(), Starts: n})
		return nil, fmt.Errorf("starting envoy %s: %w", s.binary, err)
	}
	p := &process{pid: cmd.Process.Pid, started: s.clock.Now(), done: done}
	s.log.Info("envoy started", "pid", p.pid, "binary", s.binary, "args", args)
	s.transition(Transition{To: StateRunning, PID: p.pid, Starts: n})
	return p, nil
}

type outcome struct {
	status  string
	crashed bool
	uptime  time.Duration
}

// supervise is the state machine for one process. Everything happens on this
// goroutine, so the drain timers and commands cannot race each other.
func (s *Supervisor) supervise(ctx context.Context, p *process) outcome {
	var (
		stopRequested bool // an exit now is expected, not a crash
		draining      bool
		stopping      bool
		drainC        <-chan time.Time // fixed drain, or the minimum drain
		pollC         <-chan time.Time // next active-connections check
		killC         <-chan time.Time
		timers        []clock.Timer
		ctxDone       = ctx.Done()
	)
	defer func() {
		for _, t := range timers {
			t.Stop()
		}
	}()
	after := func(d time.Duration) <-chan time.Time {
		t := s.clock.NewTimer(d)
		timers = append(timers, t)
		return t.C()
	}
	signal := func(sig syscall.Signal) {
		if err := unix.Kill(-p.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			s.log.Warn("signalling envoy", "pid", p.pid, "signal", unix.SignalName(sig), "err", err)
		}
	}
	terminate := func(reason string) {
		if stopping {
			s.log.Warn("envoy is already stopping, killing it now", "pid", p.pid, "reason", reason)
			signal(syscall.SIGKILL)
			return
		}
		stopping = true
		drainC, pollC = nil, nil
		s.transition(Transition{To: StateStopped, PID: p.pid})
		s.log.Info("stopping envoy", "pid", p.pid, "reason", reason, "kill_after", s.opts.KillGracePeriod)
		signal(syscall.SIGTERM)
		killC = after(s.opts.KillGracePeriod)
	}
	startDrain := func() {
		draining = true
		s.transition(Transition{To: StateDraining, PID: p.pid})
		inbound := s.opts.ProxyType != "router"
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.admin.DrainListeners(dctx, inbound); err != nil {
			// Draining is best effort: Envoy still closes its listeners on
			// SIGTERM, only less gracefully.
			s.log.Warn("could not start the listener drain", "err", err)
		} else {
			s.log.Info("draining envoy listeners", "inbound_only", inbound)
		}
	}
	poll := func() {
		pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := s.admin.ActiveConnections(pctx)
		switch {
		case err != nil:
			s.log.Warn("could not count active connections, will retry", "err", err)
		case n == 0:
			terminate("no active downstream connections left")
			return
		default:
			s.log.Debug("waiting for active connections to close", "active", n)
		}
		pollC = after(ConnectionPollInterval)
	}

	for {
		select {
		case ps := <-p.done:
			return outcome{status: describeExit(ps, !stopRequested), crashed: !stopRequested, uptime: s.clock.Since(p.started)}
		case <-ctxDone:
			ctxDone = nil
			stopRequested = true
			terminate("agent context cancelled")
		case c := <-s.cmds:
			switch c {
			case cmdQuit:
				stopRequested = true
				terminate("quit requested")
			case cmdShutdown:
				stopRequested = true
				switch {
				case stopping:
					terminate("shutdown signal while stopping")
				case draining:
					terminate("second shutdown signal, or shutdown after a drain: skipping the rest of the drain")
				default:
					startDrain()
					if s.opts.ExitOnZeroActiveConnections {
						drainC = after(s.opts.MinimumDrainDuration)
					} else {
						drainC = after(s.opts.TerminationDrainDuration)
					}
				}
			case cmdDrain:
				if !draining && !stopping {
					startDrain()
				}
			}
		case <-drainC:
			drainC = nil
			if s.opts.ExitOnZeroActiveConnections {
				poll()
			} else {
				terminate("termination drain duration elapsed")
			}
		case <-pollC:
			pollC = nil
			poll()
		case <-killC:
			killC = nil
			s.log.Warn("envoy did not exit after SIGTERM, sending SIGKILL", "pid", p.pid, "grace", s.opts.KillGracePeriod)
			signal(syscall.SIGKILL)
		}
	}
}

// ForwardSignals turns each signal received on sigs (SIGTERM, SIGINT) into a
// Shutdown until Run has returned, so the second one skips the drain.
func (s *Supervisor) ForwardSignals(sigs <-chan os.Signal) {
	for {
		select {
		case sig := <-sigs:
			s.log.Info("signal received", "signal", sig)
			s.Shutdown()
		case <-s.exited:
			return
		}
	}
}
