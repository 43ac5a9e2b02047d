// Package kubetest runs a real etcd and kube-apiserver on loopback, with
// service-account signing keys, TokenRequest and RBAC, so that istiod-lite's
// Kubernetes integration is tested against the API server it will meet in a
// cluster rather than a fake. There is no kubelet or controller-manager: tests
// create what those would (EndpointSlices, pod status) themselves.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Version is the kube-apiserver version setup.sh builds.
const Version = "v1.36.3"

// Issuer is the service-account token issuer the API server is started with,
// the one a default cluster uses.
const Issuer = "https://kubernetes.default.svc"

// Binaries locates etcd and kube-apiserver. A non-empty reason says why they
// cannot be had and what to run; tests skip with it.
func Binaries() (etcd, apiserver, reason string) {
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return "", "", "etcd is not on PATH: run test/kube/setup.sh (installs Debian's etcd-server)"
	}
	apiserver = os.Getenv("KUBE_APISERVER")
	if apiserver == "" {
		cache := os.Getenv("KUBE_APISERVER_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "meshlite")
		}
		apiserver = filepath.Join(cache, "kube-apiserver-"+Version)
	}
	if st, err := os.Stat(apiserver); err != nil || st.Mode()&0o111 == 0 {
		return "", "", fmt.Sprintf("kube-apiserver %s not found at %s: run test/kube/setup.sh to build it once (about 10 minutes), or set KUBE_APISERVER", Version, apiserver)
	}
	return etcd, apiserver, ""
}

// Cluster is a running etcd + kube-apiserver pair.
type Cluster struct {
	// Config authenticates as a system:masters user.
	Config *rest.Config
	Client kubernetes.Interface
	// URL is the API server's https address on 127.0.0.1.
	URL string
	// Dir holds the keys, certificates, data and logs.
	Dir string

	procs []*exec.Cmd
	waits []chan error
	once  sync.Once
}

// Start runs etcd and kube-apiserver under dir and waits until /readyz is ok.
// Stop must be called to end them.
func Start(ctx context.Context, dir string) (*Cluster, error) {
	etcdBin, apiBin, reason := Binaries()
	if reason != "" {
		return nil, errors.New(reason)
	}
	c := &Cluster{Dir: dir}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()

	etcdClient, etcdPeer, apiPort := freePort(), freePort(), freePort()
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	if err := c.spawn(etcdBin, "etcd",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(etcdPeer),
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+strconv.Itoa(etcdPeer),
		"--initial-cluster", "default=http://127.0.0.1:"+strconv.Itoa(etcdPeer),
		"--unsafe-no-fsync", // test data: durability is not wanted, speed is
	); err != nil {
		return nil, err
	}

	if err := writeSAKeys(dir); err != nil {
		return nil, err
	}
	token := randomHex(16)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "apiserver-certs")
	if err := c.spawn(apiBin, "kube-apiserver",
		"--etcd-servers", etcdURL,
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-issuer", Issuer,
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(apiPort),
		"--cert-dir", certDir,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--endpoint-reconciler-type", "none",
	); err != nil {
		return nil, err
	}
	c.URL = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.Config = &rest.Config{
		Host:            c.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, // self-signed serving cert of a throwaway server
		QPS:             200,
		Burst:           400,
	}
	if err := c.waitReady(ctx, token); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	c.Client = cs
	ok = true
	return c, nil
}

// spawn starts a process with its output in dir/<name>.log, in its own
// process group so Stop ends it and its children only.
func (c *Cluster) spawn(bin, name string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	c.procs = append(c.procs, cmd)
	c.waits = append(c.waits, done)
	return nil
}

func (c *Cluster) waitReady(ctx context.Context, token string) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last string
	for {
		for i, w := range c.waits {
			select {
			case err := <-w:
				name := filepath.Base(c.procs[i].Path)
				return fmt.Errorf("%s exited before the API server was ready (%v); see %s", name, err, c.logTail(name))
			default:
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b.String())
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver at %s not ready after 90s (last /readyz: %s); see %s", c.URL, last, filepath.Join(c.Dir, "kube-apiserver.log"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Cluster) logTail(name string) string {
	p := filepath.Join(c.Dir, name+".log")
	b, _ := os.ReadFile(p)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return p + ":\n" + string(b)
}

// Stop ends the API server, then etcd, and waits for both.
func (c *Cluster) Stop() {
	c.once.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			p := c.procs[i]
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
			select {
			case <-c.waits[i]:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
				<-c.waits[i]
			}
		}
	})
}

// StopAPIServer kills only the API server (etcd keeps running), to test how
// clients behave when they lose it. It cannot be restarted.
func (c *Cluster) StopAPIServer() {
	if len(c.procs) < 2 {
		return
	}
	_ = syscall.Kill(-c.procs[1].Process.Pid, syscall.SIGKILL)
	err := <-c.waits[1]
	c.waits[1] <- err // Stop waits on it again
}

func writeSAKeys(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
