package envoy

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// describeExit turns a process state into what an operator needs to read in
// the log, with a hint where the cause is usually outside Envoy. crashed says
// the agent did not ask for the exit (a SIGKILL it sent itself is no mystery).
func describeExit(ps *os.ProcessState, crashed bool) string {
	if ps == nil {
		return "unknown exit status"
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.String()
	}
	switch {
	case ws.Signaled():
		sig := ws.Signal()
		msg := fmt.Sprintf("killed by signal %s (%s)", unix.SignalName(sig), sig)
		if sig == syscall.SIGKILL && crashed {
			msg += "; a SIGKILL the agent did not send usually means the kernel OOM killer: check the container's memory limit (kubectl describe pod shows OOMKilled)"
		}
		if ws.CoreDump() {
			msg += "; core dumped"
		}
		return msg
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	}
	return ps.String()
}
