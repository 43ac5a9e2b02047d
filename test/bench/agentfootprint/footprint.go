package main

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// Targets from issue 6.
const (
	TargetRSS         = 16 << 20
	TargetStartToCert = 100 * time.Millisecond
)

// Config of one footprint run.
type Config struct {
	// BinDir holds pilot-agent and istiod-lite; empty means $MESHLITE_BIN,
	// or build them (static and stripped, as `make build` does).
	BinDir string
	// Settle is how long the agent runs before its RSS is read.
	Settle time.Duration
	// Downstream opens an ADS stream on the agent's xDS socket, as the
	// proxyless application does, so the xDS proxy holds an upstream stream.
	Downstream bool
	// HeapProfile, if set, saves the agent's heap profile (/debug/pprof/heap
	// on its status port) there after Settle.
	HeapProfile string
	// InitTrace runs the agent with GODEBUG=inittrace=1 and reports the
	// package initialisers that cost the most.
	InitTrace bool
	// Keep leaves the working directory (logs, certs) in place.
	Keep bool
	Log  io.Writer
}

// Result holds the figures of one run.
type Result struct {
	BinarySize   int64
	BinaryStatic bool
	// StartToCert is from just before the agent's exec to cert-chain.pem
	// existing in OUTPUT_CERTS (polled every millisecond); StartToCertLog is
	// to the timestamp of the agent's own "wrote workload certificate" log
	// line (millisecond resolution).
	StartToCert    time.Duration
	StartToCertLog time.Duration
	// DownstreamFirstResponse is from the certificate to the first xDS
	// response through the agent (zero without Downstream).
	DownstreamFirstResponse time.Duration
	Settle                  time.Duration
	RSS, PeakRSS            int64
	// RSSAnon is private memory (heap, stacks, runtime); RSSFile is pages
	// of the binary itself mapped in, shared and reclaimable.
	RSSAnon, RSSFile int64
	// Segments is the resident size of each mapping of the agent binary, by
	// permissions: r-xp is code, r--p read-only data (rodata, pclntab).
	Segments map[string]int64
	// Go runtime figures scraped from the agent's /stats/prometheus.
	HeapInuse, StackInuse, GoSys int64
	Goroutines                   int64
	// InitCosts are the slowest package initialisers (InitTrace).
	InitCosts []InitCost
	WorkDir   string
}

// InitCost is one line of GODEBUG=inittrace=1.
type InitCost struct {
	Package string
	Clock   time.Duration
	Bytes   int64
}

// Print writes one line per figure.
func (r *Result) Print(w io.Writer) {
	verdict := func(ok bool) string {
		if ok {
			return "meets target"
		}
		return "MISSES target"
	}
	fmt.Fprintf(w, "agent binary size (static=%v, stripped): %.1f MiB (%d bytes)\n", r.BinaryStatic, float64(r.BinarySize)/(1<<20), r.BinarySize)
	fmt.Fprintf(w, "agent start → cert written (file poll): %.1f ms (%s %v)\n", ms(r.StartToCert), verdict(r.StartToCert <= TargetStartToCert), TargetStartToCert)
	if r.StartToCertLog > 0 {
		fmt.Fprintf(w, "agent start → cert written (agent log timestamp): %.1f ms\n", ms(r.StartToCertLog))
	}
	if r.DownstreamFirstResponse > 0 {
		fmt.Fprintf(w, "cert → first xDS response through the agent's proxy: %.1f ms\n", ms(r.DownstreamFirstResponse))
	}
	fmt.Fprintf(w, "agent RSS after %s: %.1f MiB (%s 16 MiB)\n", r.Settle, mib(r.RSS), verdict(r.RSS <= TargetRSS))
	fmt.Fprintf(w, "agent RSS split: %.1f MiB anonymous (heap, stacks, runtime) + %.1f MiB file-backed (binary pages mapped in)\n", mib(r.RSSAnon), mib(r.RSSFile))
	if len(r.Segments) > 0 {
		perms := make([]string, 0, len(r.Segments))
		for p := range r.Segments {
			perms = append(perms, p)
		}
		sort.Strings(perms)
		var parts []string
		for _, p := range perms {
			parts = append(parts, fmt.Sprintf("%s %.1f MiB", p, mib(r.Segments[p])))
		}
		fmt.Fprintf(w, "agent binary resident by mapping (r-xp code, r--p rodata+pclntab, rw-p data): %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "agent peak RSS (VmHWM): %.1f MiB\n", mib(r.PeakRSS))
	if r.GoSys > 0 {
		fmt.Fprintf(w, "agent Go heap in use: %.1f MiB, stacks: %.1f MiB, runtime total from OS: %.1f MiB, goroutines: %d\n",
			mib(r.HeapInuse), mib(r.StackInuse), mib(r.GoSys), r.Goroutines)
	}
	for _, c := range r.InitCosts {
		fmt.Fprintf(w, "agent init cost: %s %.2f ms, %d bytes\n", c.Package, ms(c.Clock), c.Bytes)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }

// Run starts istiod-lite, then a proxyless pilot-agent, and measures it.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.Settle <= 0 {
		cfg.Settle = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	work, err := os.MkdirTemp("", "agentfootprint-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cfg.Keep || err != nil {
			fmt.Fprintf(cfg.Log, "working directory kept: %s\n", work)
			return
		}
		os.RemoveAll(work)
	}()
	bin, err := binaries(ctx, cfg.BinDir, work, cfg.Log)
	if err != nil {
		return nil, err
	}
	res = &Result{Settle: cfg.Settle, WorkDir: work}
	agentBin := filepath.Join(bin, "pilot-agent")
	st, err := os.Stat(agentBin)
	if err != nil {
		return nil, err
	}
	res.BinarySize = st.Size()
	res.BinaryStatic = isStatic(agentBin)

	cp, err := startIstiod(ctx, bin, work)
	if err != nil {
		return nil, err
	}
	defer cp.stop()
	a, err := prepareAgent(bin, work, cp)
	if err != nil {
		return nil, err
	}
	if cfg.InitTrace {
		a.cmd.Env = append(a.cmd.Env, "GODEBUG=inittrace=1")
	}
	start := time.Now()
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pilot-agent: %w", err)
	}
	defer a.stop()
	certFile := filepath.Join(a.dir, "certs", "cert-chain.pem")
	if err := poll(ctx, 10*time.Second, time.Millisecond, func() bool { _, err := os.Stat(certFile); return err == nil }); err != nil {
		return nil, fmt.Errorf("no certificate at %s within 10s (agent log %s): %w", certFile, a.logPath, err)
	}
	certAt := time.Now()
	res.StartToCert = certAt.Sub(start)

	if cfg.Downstream {
		_, closeFn, err := downstream(ctx, a.dir)
		if err != nil {
			return nil, fmt.Errorf("downstream xDS through the agent: %w (agent log %s)", err, a.logPath)
		}
		defer closeFn()
		res.DownstreamFirstResponse = time.Since(certAt)
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(cfg.Settle - time.Since(start)):
	}
	if res.RSS, res.PeakRSS, res.RSSAnon, res.RSSFile, err = procMem(a.cmd.Process.Pid); err != nil {
		return nil, err
	}
	res.Segments = binarySegments(a.cmd.Process.Pid, agentBin)
	res.HeapInuse, res.StackInuse, res.GoSys, res.Goroutines = scrapeGo(a.statusURL + "/stats/prometheus")
	if cfg.HeapProfile != "" {
		if err := save(a.statusURL+"/debug/pprof/heap?gc=1", cfg.HeapProfile); err != nil {
			fmt.Fprintf(cfg.Log, "heap profile: %v\n", err)
		}
	}
	a.stop()
	res.StartToCertLog = logTime(a.logPath, "wrote workload certificate").Sub(start)
	if res.StartToCertLog < 0 {
		res.StartToCertLog = 0
	}
	if cfg.InitTrace {
		res.InitCosts = initCosts(a.logPath, 8)
	}
	return res, nil
}

// binaries returns a directory with pilot-agent and istiod-lite.
func binaries(ctx context.Context, dir, work string, log io.Writer) (string, error) {
	if dir == "" {
		dir = os.Getenv("MESHLITE_BIN")
	}
	if dir != "" {
		for _, b := range []string{"pilot-agent", "istiod-lite"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				return "", fmt.Errorf("%s is not in %s: run `make build` or pass -bin", b, dir)
			}
		}
		return dir, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(work, "bin")
	for _, pkg := range []string{"./cmd/pilot-agent", "./cmd/istiod-lite"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out+"/", pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		fmt.Fprintf(log, "building %s (static, stripped)\n", pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
	}
	return out, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", errors.New("cannot find the meshlite module to build the binaries: run inside the repository, or set MESHLITE_BIN / -bin")
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// isStatic reports whether the ELF binary has no program interpreter.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

type istiod struct {
	cmd       *exec.Cmd
	addr      string
	caDir     string
	signing   string
	logPath   string
	debugAddr string
}

func (c *istiod) stop() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

const (
	jwtIssuer = "https://kubernetes.default.svc.cluster.local"
	namespace = "demo"
	greeter   = "greeter.demo.svc.cluster.local"
)

// meshConfig is the greeter service with one endpoint, enough for the
// downstream's listener to exist.
const meshConfig = `apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo, labels: {app: greeter}}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 7070, targetPort: 7070}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-v1, namespace: demo}
spec: {address: 127.0.0.11, labels: {app: greeter, version: v1}, serviceAccount: greeter, ports: {grpc: 7070}}
`

func startIstiod(ctx context.Context, bin, work string) (*istiod, error) {
	cfgDir, jwtDir := filepath.Join(work, "mesh"), filepath.Join(work, "jwt")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "greeter.yaml"), []byte(meshConfig), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "istiod-lite"), "token", "keygen", "--out", jwtDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("istiod-lite token keygen: %w: %s", err, out)
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	c := &istiod{addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), debugAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		caDir: filepath.Join(work, "cacerts"), signing: filepath.Join(jwtDir, "signing-key.pem"), logPath: filepath.Join(work, "istiod-lite.log")}
	logf, err := os.Create(c.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	c.cmd = exec.CommandContext(ctx, filepath.Join(bin, "istiod-lite"), "discovery",
		"--configDir", cfgDir, "--caDir", c.caDir,
		"--jwksFile", filepath.Join(jwtDir, "jwks.json"), "--jwtIssuer", jwtIssuer, "--jwtAudience", "istio-ca",
		"--grpcAddr", "", "--secureGRPCAddr", c.addr, "--httpAddr", c.debugAddr)
	c.cmd.Dir, c.cmd.Stdout, c.cmd.Stderr = work, logf, logf
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start istiod-lite: %w", err)
	}
	if err := poll(ctx, 20*time.Second, 20*time.Millisecond, func() bool { return httpOK("http://" + c.debugAddr + "/ready") }); err != nil {
		c.stop()
		return nil, fmt.Errorf("istiod-lite not ready (log %s): %w", c.logPath, err)
	}
	return c, nil
}

type agent struct {
	cmd       *exec.Cmd
	dir       string
	logPath   string
	statusURL string
	logf      *os.File
	stopped   bool
}

func (a *agent) stop() {
	if a.stopped {
		return
	}
	a.stopped = true
	_ = a.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		<-done
	}
	a.logf.Close()
}

// prepareAgent lays out a pod's directory (projected token, mesh root) and
// the proxyless agent's environment, as the demo does.
func prepareAgent(bin, work string, cp *istiod) (*agent, error) {
	dir := filepath.Join(work, "client")
	token := filepath.Join(dir, "var/run/secrets/tokens/istio-token")
	root := filepath.Join(dir, "var/run/secrets/istio/root-cert.pem")
	for _, d := range []string{filepath.Dir(token), filepath.Dir(root)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if out, err := exec.Command(filepath.Join(bin, "istiod-lite"), "token", "create", "--signing-key", cp.signing,
		"--issuer", jwtIssuer, "--audience", "istio-ca", "--namespace", namespace, "--service-account", "client",
		"--ttl", "24h", "--out", token).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("istiod-lite token create: %w: %s", err, out)
	}
	rootPEM, err := os.ReadFile(filepath.Join(cp.caDir, "root-cert.pem"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(root, rootPEM, 0o644); err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	a := &agent{dir: dir, logPath: filepath.Join(work, "pilot-agent.log"), statusURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0])}
	if a.logf, err = os.Create(a.logPath); err != nil {
		return nil, err
	}
	a.cmd = exec.Command(filepath.Join(bin, "pilot-agent"), "proxy", "sidecar", "--log_as_json")
	a.cmd.Dir, a.cmd.Stdout, a.cmd.Stderr = dir, a.logf, a.logf
	a.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"POD_NAME=client-0", "POD_NAMESPACE=" + namespace, "INSTANCE_IP=127.0.0.1", "SERVICE_ACCOUNT=client",
		"TRUST_DOMAIN=cluster.local", "CA_ADDR=" + cp.addr, "DISABLE_ENVOY=true", "ISTIOD_SAN=istiod.istio-system.svc",
		"OUTPUT_CERTS=" + filepath.Join(dir, "certs"), "GRPC_XDS_BOOTSTRAP=" + filepath.Join(dir, "etc/istio/proxy/grpc-bootstrap.json"),
		"ISTIO_META_GENERATOR=grpc",
		fmt.Sprintf(`PROXY_CONFIG={"discoveryAddress":"%s","statusPort":%d}`, cp.addr, ports[0]),
	}
	return a, nil
}

// downstream connects to the agent's xDS socket with the node the agent
// wrote into the gRPC bootstrap, asks for the greeter listener as grpc-go
// would, and waits for the answer. The stream stays open until closeFn.
func downstream(ctx context.Context, dir string) (*discovery.DiscoveryResponse, func(), error) {
	b, err := os.ReadFile(filepath.Join(dir, "etc/istio/proxy/grpc-bootstrap.json"))
	if err != nil {
		return nil, nil, err
	}
	var bs struct {
		Node struct {
			ID       string         `json:"id"`
			Metadata map[string]any `json:"metadata"`
		} `json:"node"`
	}
	if err := json.Unmarshal(b, &bs); err != nil {
		return nil, nil, fmt.Errorf("gRPC bootstrap: %w", err)
	}
	md, err := structpb.NewStruct(bs.Node.Metadata)
	if err != nil {
		return nil, nil, err
	}
	cc, err := grpc.NewClient("unix://"+filepath.Join(dir, "etc/istio/proxy/XDS"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	closeFn := func() { cancel(); cc.Close() }
	s, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(sctx)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	if err := s.Send(&discovery.DiscoveryRequest{Node: &corev3.Node{Id: bs.Node.ID, Metadata: md},
		TypeUrl: resourcev3.ListenerType, ResourceNames: []string{greeter + ":7070"}}); err != nil {
		closeFn()
		return nil, nil, err
	}
	type result struct {
		r   *discovery.DiscoveryResponse
		err error
	}
	rc := make(chan result, 1)
	go func() { r, err := s.Recv(); rc <- result{r, err} }()
	select {
	case res := <-rc:
		if res.err != nil {
			closeFn()
			return nil, nil, res.err
		}
		if err := s.Send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResourceNames: []string{greeter + ":7070"},
			VersionInfo: res.r.GetVersionInfo(), ResponseNonce: res.r.GetNonce()}); err != nil {
			closeFn()
			return nil, nil, err
		}
		return res.r, closeFn, nil
	case <-time.After(10 * time.Second):
		closeFn()
		return nil, nil, errors.New("no response within 10s")
	}
}

// procMem reads VmRSS, VmHWM, RssAnon and RssFile of pid.
func procMem(pid int) (rss, hwm, anon, file int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("read the agent's memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		case "RssAnon:":
			anon = kb << 10
		case "RssFile:":
			file = kb << 10
		}
	}
	return rss, hwm, anon, file, sc.Err()
}

// binarySegments sums the Rss of each mapping of path in /proc/pid/smaps, by
// the mapping's permissions.
func binarySegments(pid int, path string) map[string]int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	abs, _ := filepath.Abs(path)
	out := map[string]int64{}
	perms := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 6 && strings.Contains(fields[0], "-"):
			perms = ""
			if fields[5] == abs {
				perms = fields[1]
			}
		case len(fields) >= 2 && fields[0] == "Rss:" && perms != "":
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			out[perms] += kb << 10
		}
	}
	return out
}

var promLine = regexp.MustCompile(`^(go_memstats_heap_inuse_bytes|go_memstats_stack_inuse_bytes|go_memstats_sys_bytes|go_goroutines) ([0-9.e+]+)$`)

// scrapeGo reads the agent's own Go runtime metrics; zeros if unavailable.
func scrapeGo(url string) (heap, stack, sys, goroutines int64) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := promLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[1] {
		case "go_memstats_heap_inuse_bytes":
			heap = int64(v)
		case "go_memstats_stack_inuse_bytes":
			stack = int64(v)
		case "go_memstats_sys_bytes":
			sys = int64(v)
		case "go_goroutines":
			goroutines = int64(v)
		}
	}
	return
}

// logTime is the timestamp of the first JSON log line whose msg is msg.
func logTime(path, msg string) time.Time {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == msg {
			return l.Time
		}
	}
	return time.Time{}
}

var initLine = regexp.MustCompile(`^init (\S+) @[0-9.]+ ms, ([0-9.]+) ms clock, ([0-9]+) bytes`)

// initCosts parses GODEBUG=inittrace=1 output: the n slowest initialisers.
func initCosts(path string, n int) []InitCost {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []InitCost
	var total InitCost
	total.Package = "(all packages)"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := initLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		clk, _ := strconv.ParseFloat(m[2], 64)
		by, _ := strconv.ParseInt(m[3], 10, 64)
		c := InitCost{Package: m[1], Clock: time.Duration(clk * float64(time.Millisecond)), Bytes: by}
		total.Clock += c.Clock
		total.Bytes += c.Bytes
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Clock > out[j].Clock })
	if len(out) > n {
		out = out[:n]
	}
	return append([]InitCost{total}, out...)
}

func save(url, path string) error {
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func httpOK(url string) bool {
	resp, err := (&http.Client{Timeout: time.Second}).Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func poll(ctx context.Context, limit, every time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
