package security

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// agentProc is a `pilot-agent proxy sidecar` process with fake-envoy as its
// Envoy and file-mounted certificates, so that it serves its real SDS and xDS
// sockets and status server without a control plane or an Envoy binary.
type agentProc struct {
	dir        string
	cmd        *exec.Cmd
	out        *syncBuf
	exited     chan struct{} // closed when the process has been waited for
	waitErr    error         // valid once exited is closed
	statusPort int
}

// syncBuf collects the agent's output, written by exec's copying goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent starts the agent in dir; start, when set, runs the exec (to
// start it inside a network namespace).
func startAgent(t *testing.T, statusPort, adminPort int, start func(*exec.Cmd) error) *agentProc {
	t.Helper()
	bin := binaries(t)
	a := &agentProc{dir: worldDir(t), out: &syncBuf{}, exited: make(chan struct{}), statusPort: statusPort}
	writeMountedCerts(t, filepath.Join(a.dir, "etc/certs"), "spiffe://cluster.local/ns/shop/sa/frontend")
	a.cmd = exec.Command(filepath.Join(bin, "pilot-agent"), "proxy", "sidecar")
	a.cmd.Dir = a.dir
	a.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + a.dir,
		"POD_NAME=frontend-1", "POD_NAMESPACE=shop", "SERVICE_ACCOUNT=frontend", "INSTANCE_IP=10.77.0.1",
		"FILE_MOUNTED_CERTS=true",
		fmt.Sprintf(`PROXY_CONFIG={"statusPort": %d, "proxyAdminPort": %d, "binaryPath": %q, "terminationDrainDuration": "0.2s", "discoveryAddress": "127.0.0.1:1"}`,
			statusPort, adminPort, filepath.Join(bin, "fake-envoy")),
	}
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(a.cmd); err != nil {
		t.Fatalf("starting pilot-agent: %v", err)
	}
	go func() { a.waitErr = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			_ = a.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-a.exited:
			case <-time.After(10 * time.Second):
				_ = a.cmd.Process.Kill()
				<-a.exited
			}
		}
		if t.Failed() {
			t.Logf("pilot-agent output:\n%s", a.out.String())
		}
	})
	return a
}

// waitFor polls for path until the deadline, failing with the agent's output.
func (a *agentProc) waitFor(t *testing.T, rel string) string {
	t.Helper()
	path := filepath.Join(a.dir, rel)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return path
		}
		select {
		case <-a.exited:
			t.Fatalf("pilot-agent exited (%v) before creating %s:\n%s", a.waitErr, rel, a.out.String())
		default:
		}
	}
	t.Fatalf("pilot-agent did not create %s within 20s:\n%s", rel, a.out.String())
	return ""
}

// writeMountedCerts writes a root and a leaf for id, as FILE_MOUNTED_CERTS
// expects them under ./etc/certs.
func writeMountedCerts(t *testing.T, dir, id string) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"security-test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	u, _ := url.Parse(id)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"cert-chain.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		"key.pem":        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"root-cert.pem":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// dialAs connects to a unix socket from a helper process running as uid/gid
// and returns its one-line report (uid=N stat=ok|ERR dial=ok|ERR).
func dialAs(t *testing.T, uid, gid uint32, path string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), "helper"), path)
	cmd.Env = []string{helperEnv + "=dial-unix"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as uid %d: %v\n%s", uid, err, out)
	}
	return strings.TrimSpace(string(out))
}

const nobody = 65534

// TestAgentSocketsRefuseOtherUIDs: anything that can connect to the SDS
// socket gets the workload's private key, and anything that can connect to
// the xDS socket speaks to istiod as the workload. Only the agent's own UID
// (Envoy runs as the same user) may use them.
func TestAgentSocketsRefuseOtherUIDs(t *testing.T) {
	requireRoot(t, "run a client process as uid 65534")
	a := startAgent(t, freeTCPPort(t), freeTCPPort(t), nil)
	sockets := map[string]string{
		"SDS": a.waitFor(t, "var/run/secrets/workload-spiffe-uds/socket"),
		"XDS": a.waitFor(t, "etc/istio/proxy/XDS"),
	}
	for name, path := range sockets {
		t.Run(name, func(t *testing.T) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s is %v, want a socket only its owner can use (0600)", path, fi.Mode())
			}
			// Positive control: the owner connects, so a refusal below is
			// about the other UID, not a dead socket.
			if got := dialAs(t, 0, 0, path); got != "uid=0 stat=ok dial=ok" {
				t.Fatalf("the agent's own UID cannot use its %s socket: %s", name, got)
			}
			// stat=ok proves every parent directory is traversable by uid
			// 65534, so the refusal comes from the socket's own mode.
			want := fmt.Sprintf("uid=%d stat=ok dial=EACCES", nobody)
			if got := dialAs(t, nobody, nobody, path); got != want {
				t.Fatalf("uid %d connecting to the %s socket: %s, want %s", nobody, name, got, want)
			}
		})
	}
}
