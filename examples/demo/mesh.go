package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Loopback addresses match the WorkloadEntries in examples/mesh.
type workload struct {
	name, app, version, ip, serviceAccount string
	statusPort                             int
}

var workloads = []workload{
	{name: "greeter-v1", app: "greeter", version: "v1", ip: "127.0.0.11", serviceAccount: "greeter", statusPort: 15020},
	{name: "greeter-v2", app: "greeter", version: "v2", ip: "127.0.0.12", serviceAccount: "greeter", statusPort: 15120},
}

var clientWorkload = workload{name: "client", app: "client", ip: "127.0.0.21", serviceAccount: "client", statusPort: 15220}

const (
	namespace   = "demo"
	trustDomain = "cluster.local"
	jwtIssuer   = "meshlite-demo"
	debugAddr   = "127.0.0.1:8080"
	secureAddr  = "127.0.0.1:15012"
)

type mesh struct {
	bin, root string
	procs     []*exec.Cmd
}

func (m *mesh) logPath(name string) string { return filepath.Join(m.root, "logs", name+".log") }
func (m *mesh) vsPath() string             { return filepath.Join(m.root, "mesh", "greeter-virtualservice.yaml") }

// start launches a child in its own process group, so that stopAll can end it
// and anything it started, and with Pdeathsig so none outlives the demo.
func (m *mesh) start(name, dir string, env []string, stdout io.Writer, bin string, args ...string) (*exec.Cmd, error) {
	if err := os.MkdirAll(filepath.Join(m.root, "logs"), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(m.logPath(name))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(m.bin, bin), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	m.procs = append(m.procs, cmd)
	return cmd, nil
}

func (m *mesh) stopAll() {
	for i := len(m.procs) - 1; i >= 0; i-- {
		p := m.procs[i]
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	m.procs = nil
}

func (m *mesh) run(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(m.bin, args[0]), args[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func (m *mesh) startControlPlane(ctx context.Context, meshDir string) error {
	cfg := filepath.Join(m.root, "mesh")
	if err := os.CopyFS(cfg, os.DirFS(meshDir)); err != nil {
		return fmt.Errorf("copy %s: %w", meshDir, err)
	}
	jwtDir := filepath.Join(m.root, "jwt")
	if _, err := m.run("istiod-lite", "token", "keygen", "--out", jwtDir); err != nil {
		return err
	}
	_, err := m.start("istiod-lite", m.root, nil, nil, "istiod-lite", "discovery",
		"--configDir", cfg, "--caDir", filepath.Join(m.root, "ca"),
		"--jwksFile", filepath.Join(jwtDir, "jwks.json"), "--jwtIssuer", jwtIssuer, "--jwtAudience", "istio-ca",
		"--grpcAddr", "127.0.0.1:15010", "--secureGRPCAddr", secureAddr, "--httpAddr", debugAddr)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, "http://"+debugAddr+"/ready", 20*time.Second); err != nil {
		return fmt.Errorf("istiod-lite did not become ready (%w); see %s", err, m.logPath("istiod-lite"))
	}
	fmt.Printf("istiod-lite ready: xDS+CA on %s, debug on http://%s/debug/syncz\n", secureAddr, debugAddr)
	return nil
}

// prepare lays out a workload's working directory the way a pod has it: the
// projected token and the mesh root certificate at Istio's paths.
func (m *mesh) prepare(w workload) (string, []string, error) {
	dir := filepath.Join(m.root, w.name)
	token, err := m.run("istiod-lite", "token", "create", "--signing-key", filepath.Join(m.root, "jwt", "signing-key.pem"),
		"--issuer", jwtIssuer, "--audience", "istio-ca", "--namespace", namespace, "--service-account", w.serviceAccount, "--ttl", "24h")
	if err != nil {
		return "", nil, err
	}
	root, err := os.ReadFile(filepath.Join(m.root, "ca", "root-cert.pem"))
	if err != nil {
		return "", nil, fmt.Errorf("read the CA root: %w", err)
	}
	for path, data := range map[string][]byte{
		"var/run/secrets/tokens/istio-token":  []byte(token),
		"var/run/secrets/istio/root-cert.pem": root,
	} {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return "", nil, err
		}
	}
	env := []string{
		"POD_NAME=" + w.name, "POD_NAMESPACE=" + namespace, "INSTANCE_IP=" + w.ip, "SERVICE_ACCOUNT=" + w.serviceAccount,
		"TRUST_DOMAIN=" + trustDomain, "CA_ADDR=" + secureAddr, "DISABLE_ENVOY=true",
		// istiod-lite is dialled by IP here; its certificate names the in-cluster service.
		"ISTIOD_SAN=istiod.istio-system.svc",
		"OUTPUT_CERTS=" + filepath.Join(dir, "certs"),
		"GRPC_XDS_BOOTSTRAP=" + filepath.Join(dir, "etc/istio/proxy/grpc-bootstrap.json"),
		"ISTIO_META_GENERATOR=grpc", "ISTIO_META_APP=" + w.app,
		fmt.Sprintf(`PROXY_CONFIG={"discoveryAddress":"%s","statusPort":%d}`, secureAddr, w.statusPort),
	}
	if w.version != "" {
		env = append(env, fmt.Sprintf(`ISTIO_METAJSON_LABELS={"app":"%s","version":"%s"}`, w.app, w.version))
	}
	return dir, env, nil
}

func (m *mesh) startAgent(ctx context.Context, w workload) (string, []string, error) {
	dir, env, err := m.prepare(w)
	if err != nil {
		return "", nil, err
	}
	if _, err := m.start(w.name+"-agent", dir, env, nil, "pilot-agent", "proxy", "sidecar"); err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz/ready", w.statusPort)
	if err := waitHTTP(ctx, url, 20*time.Second); err != nil {
		return "", nil, fmt.Errorf("%s's agent did not become ready (%w); see %s", w.name, err, m.logPath(w.name+"-agent"))
	}
	id, expiry := certSummary(filepath.Join(dir, "certs", "cert-chain.pem"))
	fmt.Printf("%-11s agent ready  identity=%s  cert expires %s  status http://127.0.0.1:%d/healthz/ready\n",
		w.name, id, expiry, w.statusPort)
	return dir, env, nil
}

func (m *mesh) startWorkload(ctx context.Context, w workload) error {
	dir, env, err := m.startAgent(ctx, w)
	if err != nil {
		return err
	}
	_, err = m.start(w.name, dir, env, nil, "greeter", "--addr", w.ip+":7070", "--version", w.version,
		"--allowed-peer", fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, namespace, clientWorkload.serviceAccount))
	return err
}

func (m *mesh) startClient(ctx context.Context) (<-chan clientReport, error) {
	dir, env, err := m.startAgent(ctx, clientWorkload)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	cmd, err := m.start("client", dir, env, pw, "client", "--rps", "20",
		"--expect-server", fmt.Sprintf("spiffe://%s/ns/%s/sa/greeter", trustDomain, namespace))
	if err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); pw.Close() }()
	out := make(chan clientReport)
	go decodeReports(bufio.NewScanner(pr), out)
	return out, nil
}

func (m *mesh) writeVirtualService(v1, v2 int) error {
	doc := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: greeter
  namespace: demo
spec:
  hosts:
  - greeter.demo.svc.cluster.local
  http:
  - route:
    - destination:
        host: greeter.demo.svc.cluster.local
        subset: v1
      weight: %d
    - destination:
        host: greeter.demo.svc.cluster.local
        subset: v2
      weight: %d
`, v1, v2)
	// Write then rename, as an editor does, so istiod-lite never reads half a file.
	tmp := m.vsPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, m.vsPath())
}

func certSummary(path string) (id, expiry string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "?", "?"
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return "?", "?"
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "?", "?"
	}
	id = "?"
	if len(cert.URIs) > 0 {
		id = cert.URIs[0].String()
	}
	return id, cert.NotAfter.Local().Format("2006-01-02 15:04:05")
}

func waitHTTP(ctx context.Context, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return last
}
