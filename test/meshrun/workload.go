package meshrun

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Paths inside a workload directory, as Istio lays out a pod.
const (
	TokenPath     = "var/run/secrets/tokens/istio-token"
	RootCertPath  = "var/run/secrets/istio/root-cert.pem"
	CertsDir      = "certs" // OUTPUT_CERTS
	XDSSocketPath = "etc/istio/proxy/XDS"
	SDSSocketPath = "var/run/secrets/workload-spiffe-uds/socket"
	BootstrapPath = "etc/istio/proxy/grpc-bootstrap.json"
)

// prepare lays out a workload's directory as a pod's: the projected token and
// the mesh root at Istio's paths. It returns the environment the agent and
// its app share.
func (m *Mesh) prepare(w Workload) ([]string, error) {
	dir := m.WorkloadDir(w)
	token, err := m.run("istiod-lite", "token", "create", "--signing-key", filepath.Join(m.o.Root, "jwt", "signing-key.pem"),
		"--issuer", JWTIssuer, "--audience", "istio-ca", "--namespace", Namespace, "--service-account", w.ServiceAccount, "--ttl", "24h")
	if err != nil {
		return nil, err
	}
	root, err := os.ReadFile(filepath.Join(m.CADir(), "root-cert.pem"))
	if err != nil {
		return nil, fmt.Errorf("read the CA root: %w", err)
	}
	for path, data := range map[string][]byte{TokenPath: []byte(token), RootCertPath: root} {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return nil, err
		}
	}
	env := []string{
		"POD_NAME=" + w.Name, "POD_NAMESPACE=" + Namespace, "INSTANCE_IP=" + w.IP, "SERVICE_ACCOUNT=" + w.ServiceAccount,
		"TRUST_DOMAIN=" + TrustDomain, "CA_ADDR=" + m.SecureAddr(), "DISABLE_ENVOY=true",
		// istiod-lite is dialled by IP; its certificate names the in-cluster service.
		"ISTIOD_SAN=istiod.istio-system.svc",
		"OUTPUT_CERTS=" + filepath.Join(dir, CertsDir),
		"GRPC_XDS_BOOTSTRAP=" + filepath.Join(dir, BootstrapPath),
		"ISTIO_META_GENERATOR=grpc", "ISTIO_META_APP=" + w.App,
		fmt.Sprintf(`PROXY_CONFIG={"discoveryAddress":"%s","statusPort":%d}`, m.SecureAddr(), w.StatusPort),
	}
	if w.Version != "" {
		env = append(env, fmt.Sprintf(`ISTIO_METAJSON_LABELS={"app":"%s","version":"%s"}`, w.App, w.Version))
	}
	return append(env, m.o.AgentEnv...), nil
}

func (m *Mesh) appEnv(w Workload) []string {
	dir := m.WorkloadDir(w)
	return []string{"GRPC_XDS_BOOTSTRAP=" + filepath.Join(dir, BootstrapPath)}
}

// StartAgent starts the workload's pilot-agent (proxyless) and waits for its
// /healthz/ready.
func (m *Mesh) StartAgent(ctx context.Context, w Workload) (*Proc, error) {
	env, err := m.prepare(w)
	if err != nil {
		return nil, err
	}
	p, err := m.start(w.Name+"-agent", w.Name, m.WorkloadDir(w), env, nil, "pilot-agent", "proxy", "sidecar")
	if err != nil {
		return nil, err
	}
	if err := m.waitOK(ctx, p, w.Name, m.StatusURL(w)+"/healthz/ready", 20*time.Second); err != nil {
		return nil, fmt.Errorf("%s's agent did not become ready (%w); see %s", w.Name, err, p.LogPath)
	}
	c := m.Cert(w)
	m.logf("%-11s agent ready  identity=%s  cert expires %s  readiness: %scurl -s %s/healthz/ready",
		w.Name, c.ID, c.Expiry(), m.o.Network.Where(w.Name), m.StatusURL(w))
	return p, nil
}

// StartGreeter starts a greeter workload's app; it accepts only the client's
// identity.
func (m *Mesh) StartGreeter(w Workload, allowedPeer string) (*Proc, error) {
	return m.start(w.Name, w.Name, m.WorkloadDir(w), m.appEnv(w), nil, "greeter",
		"--addr", w.IP+":7070", "--version", w.Version, "--allowed-peer", allowedPeer)
}

// StartAll starts the control plane, every greeter (agent, then app) and the
// client (agent, then app), and returns the client.
func (m *Mesh) StartAll(ctx context.Context) (*Client, error) {
	if err := m.StartControlPlane(ctx); err != nil {
		return nil, err
	}
	var client *Workload
	for _, w := range m.o.Workloads {
		if w.IsClient() {
			client = &w
			continue
		}
		if _, err := m.StartAgent(ctx, w); err != nil {
			return nil, err
		}
		if _, err := m.StartGreeter(w, SPIFFEID("client")); err != nil {
			return nil, err
		}
	}
	if client == nil {
		return nil, fmt.Errorf("no client workload (App \"client\") among the workloads")
	}
	if _, err := m.StartAgent(ctx, *client); err != nil {
		return nil, err
	}
	return m.StartClient(*client, SPIFFEID("greeter"))
}
