package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// Config is one load run.
type Config struct {
	Clients  int
	Services int
	Edits    int
	Bin      string
	Timeout  time.Duration
	// Profile, when set, is where a CPU profile of istiod-lite during the edits is written.
	Profile string
	// ServerEnv is added to istiod-lite's environment (for example GOGC=100 to compare GC settings).
	ServerEnv []string
	// Verbose prints each edit's latency spread to stderr.
	Verbose bool
	// LogLevel is istiod-lite's --log_output_level; the log is printed at the end when it is not "warn".
	LogLevel string
	// HeapProfile, when set, is where istiod-lite's heap profile is written at the end.
	HeapProfile string
}

func defaultConfig() Config {
	bin := ""
	if d := os.Getenv("MESHLITE_BIN"); d != "" {
		bin = filepath.Join(d, "istiod-lite")
	}
	return Config{Clients: 1000, Services: 20, Edits: 5, Bin: bin, Timeout: time.Minute, LogLevel: "warn"}
}

// Result holds the figures a run prints.
type Result struct {
	Clients           int
	ResourcesPerProxy int
	ConnectAll        time.Duration // all clients connected and ACKed their first config
	PushToAck         []time.Duration
	RSSBytes          int64 // with all clients connected, after the edits
	PeakRSSBytes      int64
	CPUSeconds        float64 // server CPU over the whole run
	PushCPUSeconds    float64 // server CPU spent during the edits
	ClientCPUSeconds  float64 // this load generator's CPU during the edits (it shares the machine)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// Print writes one figure per line, as `make bench` expects.
func (r *Result) Print(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "xdsload clients: %d\n", r.Clients)
	fmt.Fprintf(w, "xdsload resources per client: %d\n", r.ResourcesPerProxy)
	fmt.Fprintf(w, "xdsload connect all clients (first config ACKed): %s\n", ms(r.ConnectAll))
	fmt.Fprintf(w, "xdsload VirtualService edit to ACK p50: %s\n", ms(percentile(r.PushToAck, .50)))
	fmt.Fprintf(w, "xdsload VirtualService edit to ACK p99: %s\n", ms(percentile(r.PushToAck, .99)))
	fmt.Fprintf(w, "xdsload VirtualService edit to ACK max: %s (%d samples)\n", ms(percentile(r.PushToAck, 1)), len(r.PushToAck))
	fmt.Fprintf(w, "xdsload istiod-lite RSS: %.1f MiB (peak %.1f MiB)\n", float64(r.RSSBytes)/(1<<20), float64(r.PeakRSSBytes)/(1<<20))
	fmt.Fprintf(w, "xdsload istiod-lite CPU: %.2f s total, %.2f s during edits\n", r.CPUSeconds, r.PushCPUSeconds)
	fmt.Fprintf(w, "xdsload load generator CPU during edits: %.2f s\n", r.ClientCPUSeconds)
}

const (
	host     = "greeter.demo.svc.cluster.local"
	listener = host + ":7070"
)

var clusters = []string{"outbound|7070||" + host, "outbound|7070|v1|" + host, "outbound|7070|v2|" + host}

// Run executes one load run against a freshly started istiod-lite.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	dir, err := os.MkdirTemp("", "xdsload")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if cfg.Bin == "" {
		cfg.Bin = filepath.Join(dir, "istiod-lite")
		build := exec.CommandContext(ctx, "go", "build", "-o", cfg.Bin, "github.com/meshlite/meshlite/cmd/istiod-lite")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("building istiod-lite (or pass -bin): %w", err)
		}
	}
	meshDir := filepath.Join(dir, "mesh")
	if err := writeMesh(meshDir, cfg.Services); err != nil {
		return nil, err
	}
	if err := writeVS(meshDir, 0); err != nil {
		return nil, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "istiod-lite.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	if cfg.LogLevel != "warn" {
		defer func() { b, _ := os.ReadFile(logf.Name()); os.Stderr.Write(b) }()
	}
	srv := exec.CommandContext(ctx, cfg.Bin, "discovery", "--configDir", meshDir, "--grpcAddr", grpcAddr,
		"--httpAddr", httpAddr, "--secureGRPCAddr", "", "--log_output_level", cfg.LogLevel)
	srv.Stdout, srv.Stderr = logf, logf
	srv.Env = append(os.Environ(), cfg.ServerEnv...)
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cfg.Bin, err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	pid := srv.Process.Pid
	if err := waitTCP(ctx, grpcAddr, 10*time.Second); err != nil {
		return nil, fmt.Errorf("istiod-lite did not listen on %s (log in %s): %w", grpcAddr, logf.Name(), err)
	}

	res := &Result{Clients: cfg.Clients}
	clients := make([]*client, cfg.Clients)
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, cfg.Clients)
	for i := range clients {
		c := &client{id: fmt.Sprintf("sidecar~10.%d.%d.%d~client-%d.demo~demo.svc.cluster.local", 1+i/65536, (i/256)%256, i%256, i), routeVersions: make(chan ackEvent, 16)}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.run(ctx, grpcAddr); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("client %s: %w", c.id, err)
			}
		}()
	}
	// Connected = every client ACKed its first route config.
	initial := make([]string, len(clients))
	for i, c := range clients {
		ev, err := c.next(ctx, cfg.Timeout, errc)
		if err != nil {
			return nil, fmt.Errorf("initial config for %d/%d clients: %w", i, len(clients), err)
		}
		initial[i] = ev.version
	}
	res.ConnectAll = time.Since(start)
	waitResources(clients)
	res.ResourcesPerProxy = clients[0].resourceCount()

	selfBefore, _ := cpuSeconds(os.Getpid())
	cpuBefore, err := cpuSeconds(pid)
	if err != nil {
		return nil, err
	}
	profDone := make(chan error, 1)
	if cfg.Profile != "" {
		go func() {
			profDone <- fetchProfile(ctx, "http://"+httpAddr+"/debug/pprof/profile?seconds=5", cfg.Profile)
		}()
	} else {
		profDone <- nil
	}
	for e := 1; e <= cfg.Edits; e++ {
		first := len(res.PushToAck)
		if e > 1 && cfg.Verbose {
			prev := res.PushToAck[first-len(clients):]
			fmt.Fprintf(os.Stderr, "edit %d: min %s p50 %s max %s\n", e-1, percentile(prev, 0), percentile(prev, .5), percentile(prev, 1))
		}
		t0 := time.Now()
		if err := writeVS(meshDir, e); err != nil {
			return nil, err
		}
		for i, c := range clients {
			for {
				ev, err := c.next(ctx, cfg.Timeout, errc)
				if err != nil {
					return nil, fmt.Errorf("edit %d: client %d: %w", e, i, err)
				}
				if ev.version != initial[i] {
					initial[i] = ev.version
					res.PushToAck = append(res.PushToAck, ev.at.Sub(t0))
					break
				}
			}
		}
	}
	cpuAfter, err := cpuSeconds(pid)
	if err != nil {
		return nil, err
	}
	res.PushCPUSeconds = cpuAfter - cpuBefore
	selfAfter, _ := cpuSeconds(os.Getpid())
	res.ClientCPUSeconds = selfAfter - selfBefore
	if err := <-profDone; err != nil {
		return nil, err
	}
	res.CPUSeconds = cpuAfter
	if cfg.HeapProfile != "" {
		if err := fetchProfile(ctx, "http://"+httpAddr+"/debug/pprof/heap", cfg.HeapProfile); err != nil {
			return nil, err
		}
		if err := fetchProfile(ctx, "http://"+httpAddr+"/debug/pprof/heap?debug=1", cfg.HeapProfile+".txt"); err != nil {
			return nil, err
		}
		if err := fetchProfile(ctx, "http://"+httpAddr+"/debug/pprof/goroutine?debug=1", cfg.HeapProfile+".goroutines.txt"); err != nil {
			return nil, err
		}
	}
	res.RSSBytes, res.PeakRSSBytes, err = rss(pid)
	if err != nil {
		return nil, err
	}
	return res, nil
}

type ackEvent struct {
	version string
	at      time.Time
}

// client is one simulated proxyless gRPC application: one connection, one
// ADS stream, subscribing like grpc-go to its listener, route, clusters and
// endpoints, and ACKing every response.
type client struct {
	id            string
	routeVersions chan ackEvent // each ACKed route-config version, with the ACK time

	mu        sync.Mutex
	resources map[string]int // type -> resources last received
}

func (c *client) next(ctx context.Context, timeout time.Duration, errc <-chan error) (ackEvent, error) {
	select {
	case ev := <-c.routeVersions:
		return ev, nil
	case err := <-errc:
		return ackEvent{}, err
	case <-time.After(timeout):
		return ackEvent{}, fmt.Errorf("no route update within %s", timeout)
	case <-ctx.Done():
		return ackEvent{}, ctx.Err()
	}
}

func (c *client) resourceCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.resources {
		n += v
	}
	return n
}

func waitResources(clients []*client) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c := clients[0]
		c.mu.Lock()
		n := len(c.resources)
		c.mu.Unlock()
		if n == 4 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *client) run(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	md, _ := structpb.NewStruct(map[string]any{"GENERATOR": "grpc", "NAMESPACE": "demo"})
	names := map[string][]string{
		resourcev3.ListenerType: {listener},
		resourcev3.RouteType:    {listener},
		resourcev3.ClusterType:  clusters,
		resourcev3.EndpointType: clusters,
	}
	first := true
	for _, t := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		req := &discovery.DiscoveryRequest{TypeUrl: t, ResourceNames: names[t]}
		if first {
			req.Node = &core.Node{Id: c.id, Metadata: md, UserAgentName: "xdsload"}
			first = false
		}
		if err := stream.Send(req); err != nil {
			return err
		}
	}
	c.resources = map[string]int{}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		t := resp.GetTypeUrl()
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: t, ResourceNames: names[t], VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		at := time.Now()
		c.mu.Lock()
		c.resources[t] = len(resp.GetResources())
		c.mu.Unlock()
		if t == resourcev3.RouteType {
			select {
			case c.routeVersions <- ackEvent{resp.GetVersionInfo(), at}:
			default:
				return errors.New("route updates not consumed")
			}
		}
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cpuSeconds reads utime+stime of a process from /proc (clock ticks of 1/100 s on Linux).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100, nil
}

func rss(pid int) (cur, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return cur, peak, nil
}

// fetchProfile saves a profile istiod-lite serves on its debug port.
func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching CPU profile: %w", err)
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
