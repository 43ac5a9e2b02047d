package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshlite/meshlite/test/bench/xdsload/harness"
)

// Config is one soak run.
type Config struct {
	Sidecars int
	Shapes   int // distinct sidecar label sets (Istio generates per shape)
	Agents   int // CSRs, spread evenly over the run
	Services int
	Duration time.Duration
	Interval time.Duration // between config changes
	Bin      string
	Timeout  time.Duration // per phase: connecting, one change reaching every sidecar
	LogLevel string
	Verbose  bool
	// CPUProfile, when set, receives a CPU profile of istiod-lite over the first 30 s of the soak.
	CPUProfile string
}

func defaultConfig() Config {
	return Config{Sidecars: 1000, Shapes: 10, Agents: 200, Services: 20, Duration: 2 * time.Minute,
		Interval: 5 * time.Second, Bin: harness.DefaultBin(), Timeout: time.Minute, LogLevel: "warn"}
}

func (c Config) validate() error {
	switch {
	case c.Sidecars < 1:
		return fmt.Errorf("-sidecars %d: need at least 1", c.Sidecars)
	case c.Shapes < 1:
		return fmt.Errorf("-shapes %d: need at least 1", c.Shapes)
	case c.Agents < 0:
		return fmt.Errorf("-agents %d must not be negative", c.Agents)
	case c.Interval <= 0 || c.Duration < c.Interval:
		return fmt.Errorf("-interval %s must be positive and at most -duration %s", c.Interval, c.Duration)
	}
	return nil
}

// Result holds the figures a run prints.
type Result struct {
	Sidecars     int
	Resources    map[string]int // per sidecar, by type URL
	ConnectAll   time.Duration
	Changes      int
	PushToAck    []time.Duration
	CSRs         int
	CSRLatency   []time.Duration
	RSSConnected int64
	RSSEnd       int64
	PeakRSS      int64
	MemEnd       harness.Mem
	CPUSeconds   float64 // istiod-lite over its whole life
	SoakCPU      float64 // istiod-lite during the soak (changes and CSRs)
	Errors       []string
	LoadAvg      string
	Duration     time.Duration
	Interval     time.Duration
}

// Print writes one figure per line, as `make bench` expects.
func (r *Result) Print(w io.Writer) {
	p := harness.Percentile
	fmt.Fprintf(w, "soak sidecar ADS clients: %d\n", r.Sidecars)
	var parts []string
	for _, t := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		parts = append(parts, fmt.Sprintf("%s %d", shortType(t), r.Resources[t]))
	}
	fmt.Fprintf(w, "soak resources per sidecar: %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(w, "soak connect all sidecars (first routes ACKed): %s\n", harness.Ms(r.ConnectAll))
	fmt.Fprintf(w, "soak config changes: %d (one every %s for %s)\n", r.Changes, r.Interval, r.Duration)
	fmt.Fprintf(w, "soak push-to-ACK p50: %s\n", harness.Ms(p(r.PushToAck, .50)))
	fmt.Fprintf(w, "soak push-to-ACK p99: %s\n", harness.Ms(p(r.PushToAck, .99)))
	fmt.Fprintf(w, "soak push-to-ACK max: %s (%d samples)\n", harness.Ms(p(r.PushToAck, 1)), len(r.PushToAck))
	fmt.Fprintf(w, "soak CSRs signed: %d\n", r.CSRs)
	fmt.Fprintf(w, "soak CSR latency p50: %s\n", harness.Ms(p(r.CSRLatency, .50)))
	fmt.Fprintf(w, "soak CSR latency p99: %s\n", harness.Ms(p(r.CSRLatency, .99)))
	fmt.Fprintf(w, "soak istiod-lite RSS: %s all connected, %s at the end (peak %s)\n", harness.MiB(r.RSSConnected), harness.MiB(r.RSSEnd), harness.MiB(r.PeakRSS))
	fmt.Fprintf(w, "soak istiod-lite RSS split at the end: %s\n", r.MemEnd)
	fmt.Fprintf(w, "soak istiod-lite CPU: %.2f s total, %.2f s during the soak\n", r.CPUSeconds, r.SoakCPU)
	fmt.Fprintf(w, "soak load average (1 min): %s\n", r.LoadAvg)
	fmt.Fprintf(w, "soak errors: %d\n", len(r.Errors))
	for _, e := range r.Errors {
		fmt.Fprintf(w, "soak error: %s\n", e)
	}
}

func shortType(t string) string {
	switch t {
	case resourcev3.ClusterType:
		return "cds"
	case resourcev3.EndpointType:
		return "eds"
	case resourcev3.ListenerType:
		return "lds"
	case resourcev3.RouteType:
		return "rds"
	}
	return t
}

// Run executes one soak against a freshly started istiod-lite.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "soak")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if cfg.Bin, err = harness.EnsureBin(ctx, cfg.Bin, dir); err != nil {
		return nil, err
	}
	meshDir := filepath.Join(dir, "mesh")
	if err := harness.WriteMesh(meshDir, cfg.Services); err != nil {
		return nil, err
	}
	if err := harness.WriteVS(meshDir, 0); err != nil {
		return nil, err
	}
	// The CA verifies tokens against a JWKS made the way a user makes one.
	jwtDir := filepath.Join(dir, "jwt")
	if out, err := exec.CommandContext(ctx, cfg.Bin, "token", "keygen", "--out", jwtDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("istiod-lite token keygen: %w: %s", err, out)
	}
	agents, err := newAgents(filepath.Join(dir, "agents"), filepath.Join(jwtDir, "signing-key.pem"), cfg.Agents)
	if err != nil {
		return nil, err
	}
	srv, err := harness.StartServer(ctx, harness.ServerOptions{Bin: cfg.Bin, Dir: dir, ConfigDir: meshDir,
		CA: true, JWKSFile: filepath.Join(jwtDir, "jwks.json"), LogLevel: cfg.LogLevel})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	if cfg.LogLevel != "warn" {
		defer func() { os.Stderr.Write(srv.Log()) }()
	}
	roots, err := loadRoots(filepath.Join(srv.CADir, "root-cert.pem"))
	if err != nil {
		return nil, err
	}

	res := &Result{Sidecars: cfg.Sidecars, Duration: cfg.Duration, Interval: cfg.Interval}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sidecars := make([]*sidecar, cfg.Sidecars)
	errc := make(chan error, cfg.Sidecars)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: streams end, then their goroutines
	start := time.Now()
	for i := range sidecars {
		s := newSidecar(i, cfg.Shapes)
		sidecars[i] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.run(ctx, srv.GRPCAddr); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("sidecar %s: stream ended: %w", s.id, err)
			}
		}()
	}
	versions := make([]string, len(sidecars))
	for i, s := range sidecars {
		a, err := s.next(ctx, cfg.Timeout, errc)
		if err != nil {
			return nil, fmt.Errorf("connecting: %d/%d sidecars got routes: %w", i, len(sidecars), err)
		}
		versions[i] = a.version
	}
	res.ConnectAll = time.Since(start)
	res.Resources = sidecars[0].resourceCounts()
	if res.RSSConnected, _, err = harness.RSS(srv.Pid); err != nil {
		return nil, err
	}

	cpuBefore, err := harness.CPUSeconds(srv.Pid)
	if err != nil {
		return nil, err
	}
	profDone := make(chan error, 1)
	if cfg.CPUProfile != "" {
		secs := int(min(cfg.Duration, 30*time.Second) / time.Second)
		go func() {
			profDone <- srv.FetchProfile(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(secs, 1)), cfg.CPUProfile)
		}()
	} else {
		profDone <- nil
	}

	// CSRs: agent j starts at j/Agents of the run, each on its own connection.
	soakStart := time.Now()
	var (
		csrMu   sync.Mutex
		csrWG   sync.WaitGroup
		csrErrs []string
	)
	for j, a := range agents {
		csrWG.Add(1)
		go func() {
			defer csrWG.Done()
			at := soakStart.Add(time.Duration(j) * cfg.Duration / time.Duration(len(agents)))
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				return
			}
			sctx, scancel := context.WithTimeout(ctx, cfg.Timeout)
			defer scancel()
			took, err := a.sign(sctx, srv.SecureAddr, roots)
			csrMu.Lock()
			defer csrMu.Unlock()
			if err != nil {
				csrErrs = append(csrErrs, err.Error())
				return
			}
			res.CSRs++
			res.CSRLatency = append(res.CSRLatency, took)
		}()
	}

	// Config changes: change e is written at (e-1)*Interval and measured until
	// every sidecar ACKed the new route version.
	changes := int(cfg.Duration / cfg.Interval)
	for e := 1; e <= changes; e++ {
		at := soakStart.Add(time.Duration(e-1) * cfg.Interval)
		select {
		case <-time.After(time.Until(at)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		t0 := time.Now()
		if err := harness.WriteVS(meshDir, e); err != nil {
			return nil, err
		}
		first := len(res.PushToAck)
		for i, s := range sidecars {
			for {
				a, err := s.next(ctx, cfg.Timeout, errc)
				if err != nil {
					return nil, fmt.Errorf("change %d: sidecar %d: %w", e, i, err)
				}
				if a.version != versions[i] {
					versions[i] = a.version
					res.PushToAck = append(res.PushToAck, a.at.Sub(t0))
					break
				}
			}
		}
		res.Changes++
		if cfg.Verbose {
			d := res.PushToAck[first:]
			fmt.Fprintf(os.Stderr, "change %d: min %s p50 %s max %s (load %s)\n", e,
				harness.Ms(harness.Percentile(d, 0)), harness.Ms(harness.Percentile(d, .5)), harness.Ms(harness.Percentile(d, 1)), harness.LoadAvg())
		}
	}
	// The last change is measured; let the rest of the run's CSRs finish.
	csrWG.Wait()
	if err := <-profDone; err != nil {
		return nil, err
	}
	cpuAfter, err := harness.CPUSeconds(srv.Pid)
	if err != nil {
		return nil, err
	}
	res.CPUSeconds, res.SoakCPU = cpuAfter, cpuAfter-cpuBefore
	if res.MemEnd, err = harness.Memory(srv.Pid); err != nil {
		return nil, err
	}
	res.RSSEnd, res.PeakRSS = res.MemEnd.RSS, res.MemEnd.Peak
	res.LoadAvg = harness.LoadAvg()
	select {
	case err := <-errc:
		res.Errors = append(res.Errors, err.Error())
	default:
	}
	sort.Strings(csrErrs)
	res.Errors = append(res.Errors, csrErrs...)
	res.Errors = append(res.Errors, serverErrors(srv.Log())...)
	return res, nil
}

// serverErrors returns istiod-lite's ERROR log lines: a soak must not provoke any.
func serverErrors(log []byte) []string {
	var out []string
	for _, line := range bytes.Split(log, []byte("\n")) {
		if bytes.Contains(line, []byte("level=ERROR")) {
			out = append(out, "istiod-lite: "+string(line))
		}
	}
	return out
}

func percentile(d []time.Duration, p float64) time.Duration { return harness.Percentile(d, p) }
