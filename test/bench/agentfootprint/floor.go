package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Floor is the RSS of the floor program (./floor): the least any agent
// linking the libraries the proxyless path needs can be resident.
type Floor struct {
	BinarySize int64
	RSS        int64
	Anon, File int64
	Settle     time.Duration
}

// RunFloor builds the floor program as the agent is built and measures it.
func RunFloor(ctx context.Context, settle time.Duration, log io.Writer) (*Floor, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "agentfloor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "floor")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./test/bench/agentfootprint/floor")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	fmt.Fprintln(log, "building the floor program (static, stripped)")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build floor: %w\n%s", err, b)
	}
	st, err := os.Stat(bin)
	if err != nil {
		return nil, err
	}
	p := exec.CommandContext(ctx, bin, filepath.Join(work, "s.sock"), "127.0.0.1:0")
	out, err := p.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.Stderr = log
	if err := p.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = p.Process.Kill(); _ = p.Wait() }()
	if !bufio.NewScanner(out).Scan() {
		return nil, fmt.Errorf("floor program did not start")
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(settle):
	}
	f := &Floor{BinarySize: st.Size(), Settle: settle}
	if f.RSS, _, f.Anon, f.File, err = procMem(p.Process.Pid); err != nil {
		return nil, err
	}
	return f, nil
}

// Print writes one line per figure.
func (f *Floor) Print(w io.Writer) {
	fmt.Fprintf(w, "floor (gRPC + SDS/discovery protos + CA protos + Prometheus, doing nothing) binary size: %.1f MiB\n", float64(f.BinarySize)/(1<<20))
	fmt.Fprintf(w, "floor RSS after %s: %.1f MiB (%.1f MiB anonymous + %.1f MiB file-backed)\n", f.Settle, mib(f.RSS), mib(f.Anon), mib(f.File))
}
