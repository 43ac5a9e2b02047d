package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/sds/spiffe"
)

// writeMountedCerts writes a root and a leaf for id under dir, as a pod's
// file-mounted credentials (FILE_MOUNTED_CERTS=true) would have them.
func writeMountedCerts(t *testing.T, dir string, id spiffe.Identity) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), URIs: []*neturl.URL{id.URL()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	files := map[string][]byte{
		"cert-chain.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		"key.pem":        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"root-cert.pem":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// shortDir is a temp dir short enough for unix socket paths (108 bytes), which
// t.TempDir's long names under a long test name can exceed.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ag")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// loadConfig builds a Config the way `pilot-agent proxy` does, from env alone,
// rooted at a fresh working directory.
func loadConfig(t *testing.T, dir string, env map[string]string) *config.Config {
	t.Helper()
	base := config.MapEnv{"POD_NAME": "greeter-v1", "POD_NAMESPACE": "demo", "INSTANCE_IP": "127.0.0.11",
		"SERVICE_ACCOUNT": "greeter", "FILE_MOUNTED_CERTS": "true"}
	for k, v := range env {
		base[k] = v
	}
	c, err := config.Load(config.Options{WorkDir: dir, LookupEnv: base.Lookup, Environ: base.Environ,
		HostIPs: func() []string { return nil }})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

// ready polls /healthz/ready until it returns want, and returns the last body.
func ready(t *testing.T, port int, want int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var body string
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz/ready", port))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if resp.StatusCode == want {
				return body
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("readiness never returned %d; last body: %q", want, body)
	return ""
}

func TestProxylessAgentWritesBootstrapAndCertsAndExitsOnSignal(t *testing.T) {
	dir := shortDir(t)
	id := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "demo", ServiceAccount: "greeter"}
	writeMountedCerts(t, filepath.Join(dir, "etc/certs"), id)
	status := freePort(t)
	c := loadConfig(t, dir, map[string]string{
		"DISABLE_ENVOY": "true", "OUTPUT_CERTS": "./out",
		"PROXY_CONFIG": fmt.Sprintf(`{"statusPort": %d, "discoveryAddress": "127.0.0.1:1"}`, status),
	})
	a, err := New(c, Options{Environ: []string{"ISTIO_META_GENERATOR=grpc"}})
	if err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background(), sigs) }()

	ready(t, status, http.StatusOK)
	for _, f := range []string{"out/cert-chain.pem", "out/key.pem", "out/root-cert.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("OUTPUT_CERTS file missing: %v", err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, config.DefaultGRPCXDSBootstrap))
	if err != nil {
		t.Fatal(err)
	}
	var bs struct {
		XDSServers []struct {
			ServerURI string `json:"server_uri"`
		} `json:"xds_servers"`
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	if err := json.Unmarshal(raw, &bs); err != nil {
		t.Fatal(err)
	}
	// The socket must be named by an absolute path that exists: the app runs elsewhere.
	sock := strings.TrimPrefix(bs.XDSServers[0].ServerURI, "unix://")
	if !filepath.IsAbs(sock) {
		t.Errorf("server_uri %q is not absolute", bs.XDSServers[0].ServerURI)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("server_uri %q does not name the agent's live socket: %v", sock, err)
	}
	if want := "sidecar~127.0.0.11~greeter-v1.demo~demo.svc.cluster.local"; bs.Node.ID != want {
		t.Errorf("node id %q, want %q", bs.Node.ID, want)
	}

	sigs <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after SIGTERM = %v, want nil (clean exit)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit after SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("XDS socket left behind after exit: %v", err)
	}
}

func TestEnvoyModeSupervisesEnvoyAndDrainsOnSignal(t *testing.T) {
	fake := buildFakeEnvoy(t)
	dir := shortDir(t)
	id := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "demo", ServiceAccount: "greeter"}
	writeMountedCerts(t, filepath.Join(dir, "etc/certs"), id)
	status, admin := freePort(t), freePort(t)
	events := filepath.Join(dir, "events")
	c := loadConfig(t, dir, map[string]string{
		"PROXY_CONFIG": fmt.Sprintf(`{"statusPort": %d, "proxyAdminPort": %d, "binaryPath": %q, "terminationDrainDuration": "0.2s", "discoveryAddress": "127.0.0.1:1"}`,
			status, admin, fake),
	})
	t.Setenv("FAKE_ENVOY_EVENTS", events) // Envoy inherits the agent's environment
	a, err := New(c, Options{Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 2)
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background(), sigs) }()

	// The fake reports LIVE with CDS and LDS; the certificate has not been
	// ACKed over SDS (the fake does not speak SDS), so that is what is missing.
	var body string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if body = ready(t, status, http.StatusServiceUnavailable); !strings.Contains(body, "envoy") {
			break
		}
	}
	if !strings.Contains(body, "workload-cert") {
		t.Errorf("readiness body %q does not name the missing workload certificate", body)
	}

	sigs <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after SIGTERM = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not exit after SIGTERM")
	}
	ev, _ := os.ReadFile(events)
	if !strings.Contains(string(ev), "drain_listeners") {
		t.Errorf("Envoy was not drained before it was stopped; fake-envoy events:\n%s", ev)
	}
	if _, err := os.Stat(filepath.Join(dir, config.DefaultSDSSocket)); !os.IsNotExist(err) {
		t.Errorf("SDS socket left behind: %v", err)
	}
}

func TestNewRefusesAnInvalidBootstrapOverride(t *testing.T) {
	dir := t.TempDir()
	writeMountedCerts(t, filepath.Join(dir, "etc/certs"), spiffe.Identity{TrustDomain: "cluster.local", Namespace: "demo", ServiceAccount: "greeter"})
	if err := os.WriteFile(filepath.Join(dir, "override.yaml"), []byte("admin: {address: {socket_address: {port_value: 99999}}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := loadConfig(t, dir, map[string]string{"ISTIO_BOOTSTRAP_OVERRIDE": "./override.yaml"})
	_, err := New(c, Options{Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), "port_value") {
		t.Fatalf("New = %v, want an error naming the bad field port_value", err)
	}
}

func buildFakeEnvoy(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "fake-envoy")
	cmd := exec.Command("go", "build", "-o", out, "./envoy/testdata/fake-envoy")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fake-envoy: %v\n%s", err, b)
	}
	return out
}

func TestCertRefreshIntervalFitsTheGraceWindow(t *testing.T) {
	for _, tt := range []struct {
		ttl   time.Duration
		ratio float64
		want  time.Duration
	}{
		{30 * time.Second, 0.5, 3750 * time.Millisecond}, // e2e rotation: well inside the 15 s window
		{24 * time.Hour, 0.5, 15 * time.Minute},          // capped
		{time.Second, 0.1, time.Second},                  // floored
	} {
		if got := certRefreshInterval(tt.ttl, tt.ratio); got != tt.want {
			t.Errorf("certRefreshInterval(%s, %g) = %s, want %s", tt.ttl, tt.ratio, got, tt.want)
		}
	}
}
