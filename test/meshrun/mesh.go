// Package meshrun starts and stops a whole meshlite mesh from the built
// binaries: istiod-lite with a copy of a mesh config directory, and proxyless
// workloads (greeter servers and a client), each with its own pilot-agent and
// working directory laid out as a pod's. The demo and the end-to-end tests
// both use it, so what the demo shows is what the tests prove.
//
// Every port and address is an option, so that several meshes can run side by
// side (the tests run scenarios in parallel on distinct loopback addresses),
// and a Network decides where processes run: the host with loopback addresses,
// or a network namespace per workload (Netns).
package meshrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mesh-wide names, as in examples/mesh.
const (
	Namespace   = "demo"
	TrustDomain = "cluster.local"
	JWTIssuer   = "meshlite-demo"
	// ServiceHost is the greeter service the client calls.
	ServiceHost = "greeter.demo.svc.cluster.local"
)

// SPIFFEID is the identity the CA issues to a service account of the mesh.
func SPIFFEID(serviceAccount string) string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", TrustDomain, Namespace, serviceAccount)
}

// Binaries the mesh runs; all must be in Options.BinDir.
var Binaries = []string{"pilot-agent", "istiod-lite", "greeter", "client"}

// Options configure a Mesh. Zero values take the demo's defaults.
type Options struct {
	BinDir  string // pilot-agent, istiod-lite, greeter and client
	MeshDir string // config copied into Root/mesh and served (examples/mesh)
	Root    string // working directory: logs/, mesh/, ca/, jwt/, one directory per workload

	Network Network // default Loopback
	// IstiodIP is where istiod-lite listens for xDS and CSRs, and what agents
	// dial (default 127.0.0.1). Its debug HTTP port listens on 127.0.0.1.
	IstiodIP                       string
	SecurePort, GRPCPort, HTTPPort int // default 15012, 15010, 8080

	// Workloads are the greeters and the client (default DefaultWorkloads).
	Workloads []Workload
	// AgentEnv is added to every agent's environment (e.g. SECRET_TTL=30s).
	AgentEnv []string
	// ClientRPS is the client's request rate (default 20).
	ClientRPS int
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// Workload is one pod of the mesh.
type Workload struct {
	Name, App, Version, ServiceAccount string
	// IP is the workload's address; its WorkloadEntry in the copied mesh
	// config is rewritten from MeshIP to it.
	IP, MeshIP string
	StatusPort int // the agent's status server (15020 in Istio)
}

// IsClient reports whether the workload runs the client rather than a greeter.
func (w Workload) IsClient() bool { return w.App == "client" }

// DefaultWorkloads are the demo's three workloads with the addresses of
// examples/mesh and distinct status ports, for the loopback network.
func DefaultWorkloads() []Workload {
	return []Workload{
		{Name: "greeter-v1", App: "greeter", Version: "v1", ServiceAccount: "greeter", IP: "127.0.0.11", MeshIP: "127.0.0.11", StatusPort: 15020},
		{Name: "greeter-v2", App: "greeter", Version: "v2", ServiceAccount: "greeter", IP: "127.0.0.12", MeshIP: "127.0.0.12", StatusPort: 15120},
		{Name: "client", App: "client", ServiceAccount: "client", IP: "127.0.0.21", MeshIP: "127.0.0.21", StatusPort: 15220},
	}
}

// Mesh is a running (or stopped) mesh. Methods are safe for one goroutine
// driving the mesh while others read reports.
type Mesh struct {
	o Options

	mu     sync.Mutex
	procs  []*Proc
	istiod *Proc
}

// New checks the binaries and makes Root's layout; nothing starts yet.
func New(o Options) (*Mesh, error) {
	if o.Root == "" || o.BinDir == "" || o.MeshDir == "" {
		return nil, errors.New("meshrun: BinDir, MeshDir and Root are required")
	}
	bin, err := filepath.Abs(o.BinDir)
	if err != nil {
		return nil, err
	}
	o.BinDir = bin
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make build` first", b, bin)
		}
	}
	if o.Network == nil {
		o.Network = Loopback{}
	}
	if o.IstiodIP == "" {
		o.IstiodIP = "127.0.0.1"
	}
	if o.SecurePort == 0 {
		o.SecurePort = 15012
	}
	if o.GRPCPort == 0 {
		o.GRPCPort = 15010
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = 8080
	}
	if o.Workloads == nil {
		o.Workloads = DefaultWorkloads()
	}
	if o.ClientRPS == 0 {
		o.ClientRPS = 20
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := os.MkdirAll(filepath.Join(o.Root, "logs"), 0o755); err != nil {
		return nil, err
	}
	return &Mesh{o: o}, nil
}

// Options returns the effective options.
func (m *Mesh) Options() Options { return m.o }

// Workload returns the named workload.
func (m *Mesh) Workload(name string) (Workload, bool) {
	for _, w := range m.o.Workloads {
		if w.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}

// LogPath is the log file of a process started under name.
func (m *Mesh) LogPath(name string) string { return filepath.Join(m.o.Root, "logs", name+".log") }

// ConfigDir is the served copy of the mesh config.
func (m *Mesh) ConfigDir() string { return filepath.Join(m.o.Root, "mesh") }

// CADir is istiod-lite's --caDir; it survives restarts.
func (m *Mesh) CADir() string { return filepath.Join(m.o.Root, "ca") }

// WorkloadDir is the workload's working directory (its "pod").
func (m *Mesh) WorkloadDir(w Workload) string { return filepath.Join(m.o.Root, w.Name) }

// SecureAddr is istiod-lite's xDS+CA address.
func (m *Mesh) SecureAddr() string {
	return net.JoinHostPort(m.o.IstiodIP, strconv.Itoa(m.o.SecurePort))
}

// DebugURL is istiod-lite's debug HTTP base URL, as seen from its own place.
func (m *Mesh) DebugURL() string { return "http://127.0.0.1:" + strconv.Itoa(m.o.HTTPPort) }

// StatusURL is the workload agent's status server, as seen from its own place.
func (m *Mesh) StatusURL(w Workload) string { return "http://127.0.0.1:" + strconv.Itoa(w.StatusPort) }

// Network is where processes run.
func (m *Mesh) Network() Network { return m.o.Network }

func (m *Mesh) logf(format string, args ...any) { fmt.Fprintf(m.o.Log, format+"\n", args...) }

// start launches bin in place ns ("" for the control plane's), logging to
// logs/<name>.log.
func (m *Mesh) start(name, place, dir string, env []string, stdout *os.File, bin string, args ...string) (*Proc, error) {
	cmd := m.o.Network.Command(place, filepath.Join(m.o.BinDir, bin), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if stdout != nil {
		cmd.Stdout = stdout
	}
	p, err := startProc(name, m.LogPath(name), cmd)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.procs = append(m.procs, p)
	m.mu.Unlock()
	return p, nil
}

// Stop ends every process, newest first, each with a short grace period.
func (m *Mesh) Stop() {
	m.mu.Lock()
	procs := m.procs
	m.procs = nil
	m.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
}

// Procs lists the processes started so far, oldest first.
func (m *Mesh) Procs() []*Proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Proc(nil), m.procs...)
}

// Get fetches url from inside place and returns the status code and body
// (capped at 1 MiB).
func (m *Mesh) Get(ctx context.Context, place, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := httpClient(m.o.Network, place).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// WaitOK polls url from inside place until it answers 200, or limit passes;
// the error then carries the last answer (readiness says what is missing).
func (m *Mesh) WaitOK(ctx context.Context, place, url string, limit time.Duration) error {
	return m.waitOK(ctx, nil, place, url, limit)
}

// waitOK is WaitOK that gives up early when p exits.
func (m *Mesh) waitOK(ctx context.Context, p *Proc, place, url string, limit time.Duration) error {
	var exited <-chan struct{}
	if p != nil {
		exited = p.Done()
	}
	deadline := time.Now().Add(limit)
	var last error
	for {
		code, body, err := m.Get(ctx, place, url)
		switch {
		case err != nil:
			last = err
		case code == http.StatusOK:
			return nil
		default:
			last = fmt.Errorf("%s: %d %s", url, code, strings.TrimSpace(body))
		}
		if time.Now().After(deadline) {
			return last
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return fmt.Errorf("%s exited (%v)", p.Name, p.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
