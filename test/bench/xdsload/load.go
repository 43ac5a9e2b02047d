package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlite/meshlite/test/bench/xdsload/harness"
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
	return Config{Clients: 1000, Services: 20, Edits: 5, Bin: harness.DefaultBin(), Timeout: time.Minute, LogLevel: "warn"}
}

// Result holds the figures a run prints.
type Result struct {
	Clients           int
	ResourcesPerProxy int
	ConnectAll        time.Duration // all clients connected and ACKed their first config
	PushToAck         []time.Duration
	RSSBytes          int64 // with all clients connected, after the edits
	Mem               harness.Mem
	PeakRSSBytes      int64
	CPUSeconds        float64 // server CPU over the whole run
	PushCPUSeconds    float64 // server CPU spent during the edits
	ClientCPUSeconds  float64 // this load generator's CPU during the edits (it shares the machine)
	LoadAvg           string  // 1-minute load average at the end: the machine may be shared
	Edits             int
	ReadCalls         int64 // istiod-lite read and write system calls during the edits
	WriteCalls        int64
}

func percentile(d []time.Duration, p float64) time.Duration { return harness.Percentile(d, p) }

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
	fmt.Fprintf(w, "xdsload istiod-lite RSS split: %s\n", r.Mem)
	fmt.Fprintf(w, "xdsload istiod-lite CPU: %.2f s total, %.2f s during edits\n", r.CPUSeconds, r.PushCPUSeconds)
	fmt.Fprintf(w, "xdsload load generator CPU during edits: %.2f s\n", r.ClientCPUSeconds)
	if r.Edits > 0 && r.Clients > 0 {
		per := float64(r.Edits * r.Clients)
		fmt.Fprintf(w, "xdsload istiod-lite system calls per client per edit: %.2f reads, %.2f writes\n", float64(r.ReadCalls)/per, float64(r.WriteCalls)/per)
	}
	fmt.Fprintf(w, "xdsload load average (1 min): %s\n", r.LoadAvg)
}

const (
	host     = harness.GreeterHost
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
	meshDir := filepath.Join(dir, "mesh")
	if err := harness.WriteMesh(meshDir, cfg.Services); err != nil {
		return nil, err
	}
	if err := harness.WriteVS(meshDir, 0); err != nil {
		return nil, err
	}
	srv, err := harness.StartServer(ctx, harness.ServerOptions{Bin: cfg.Bin, Dir: dir, ConfigDir: meshDir, LogLevel: cfg.LogLevel, Env: cfg.ServerEnv})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	if cfg.LogLevel != "warn" {
		defer func() { os.Stderr.Write(srv.Log()) }()
	}
	pid := srv.Pid
	grpcAddr := srv.GRPCAddr

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

	selfBefore, _ := harness.CPUSeconds(os.Getpid())
	cpuBefore, err := harness.CPUSeconds(pid)
	if err != nil {
		return nil, err
	}
	readsBefore, writesBefore, ioErr := harness.IOCalls(pid)
	profDone := make(chan error, 1)
	if cfg.Profile != "" {
		go func() {
			profDone <- srv.FetchProfile(ctx, "/debug/pprof/profile?seconds=5", cfg.Profile)
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
		if err := harness.WriteVS(meshDir, e); err != nil {
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
	cpuAfter, err := harness.CPUSeconds(pid)
	if err != nil {
		return nil, err
	}
	res.PushCPUSeconds = cpuAfter - cpuBefore
	if reads, writes, err := harness.IOCalls(pid); err == nil && ioErr == nil {
		res.Edits, res.ReadCalls, res.WriteCalls = cfg.Edits, reads-readsBefore, writes-writesBefore
	}
	selfAfter, _ := harness.CPUSeconds(os.Getpid())
	res.ClientCPUSeconds = selfAfter - selfBefore
	if err := <-profDone; err != nil {
		return nil, err
	}
	res.CPUSeconds = cpuAfter
	if cfg.HeapProfile != "" {
		for path, file := range map[string]string{
			"/debug/pprof/heap":              cfg.HeapProfile,
			"/debug/pprof/heap?debug=1":      cfg.HeapProfile + ".txt",
			"/debug/pprof/goroutine?debug=1": cfg.HeapProfile + ".goroutines.txt",
		} {
			if err := srv.FetchProfile(ctx, path, file); err != nil {
				return nil, err
			}
		}
	}
	res.LoadAvg = harness.LoadAvg()
	if res.Mem, err = harness.Memory(pid); err != nil {
		return nil, err
	}
	res.RSSBytes, res.PeakRSSBytes = res.Mem.RSS, res.Mem.Peak
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
