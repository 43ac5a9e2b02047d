package meshrun

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process of the mesh. Each runs in its own process group
// (so that stopping it also stops anything it started) and with Pdeathsig, so
// none outlives the orchestrator even when that is killed.
type Proc struct {
	Name    string
	LogPath string
	Dir     string // working directory (the workload's "pod" root)
	cmd     *exec.Cmd

	done    chan struct{}
	mu      sync.Mutex
	waitErr error
}

// Pid is the child's process ID (also its process group ID).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitCode is the exit status after Done (-1 when killed by a signal).
func (p *Proc) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// Err is what Wait returned, after Done.
func (p *Proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Signal sends sig to the process only (not its group), as a kubelet does to
// a container's PID 1.
func (p *Proc) Signal(sig syscall.Signal) error { return syscall.Kill(p.Pid(), sig) }

// Stop ends the whole process group: SIGTERM, then SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
	}
	// Children that ignored SIGTERM but stayed in the group go too.
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// GroupAlive reports whether any process of the group still exists.
func (p *Proc) GroupAlive() bool {
	err := syscall.Kill(-p.Pid(), 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func startProc(name, logPath string, cmd *exec.Cmd) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if cmd.Stdout == nil {
		cmd.Stdout = logf
	}
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, cmd.Path, err)
	}
	p := &Proc{Name: name, LogPath: logPath, Dir: cmd.Dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}
