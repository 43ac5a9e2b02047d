package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"
)

// Istio's OUTPUT_CERTS file names, which the agent writes and grpc-go's
// file_watcher certificate provider reads.
const (
	CertChainFile = "cert-chain.pem"
	KeyFile       = "key.pem"
	RootCertFile  = "root-cert.pem"
)

// GRPCOptions are the inputs of the gRPC xDS bootstrap for proxyless apps.
type GRPCOptions struct {
	// Node supplies the identity; its ProxyType is ignored (proxyless nodes
	// are "sidecar" in Istio).
	Node Options
	// XDSSocket is the absolute path of the agent's xDS proxy socket. A
	// relative path is refused: grpc-go resolves it against the app's working
	// directory, not the agent's.
	XDSSocket string
	// CertDir is OUTPUT_CERTS, the absolute directory of the workload certs.
	CertDir string
	// RefreshInterval is how often grpc-go re-reads the cert files; default 900s.
	RefreshInterval time.Duration
}

type grpcBootstrap struct {
	XDSServers                         []grpcServer            `json:"xds_servers"`
	Node                               grpcNode                `json:"node"`
	CertificateProviders               map[string]certProvider `json:"certificate_providers"`
	ServerListenerResourceNameTemplate string                  `json:"server_listener_resource_name_template"`
}

type grpcServer struct {
	ServerURI      string         `json:"server_uri"`
	ChannelCreds   []channelCreds `json:"channel_creds"`
	ServerFeatures []string       `json:"server_features"`
}

type channelCreds struct {
	Type string `json:"type"`
}

type grpcNode struct {
	ID       string         `json:"id"`
	Cluster  string         `json:"cluster,omitempty"`
	Metadata map[string]any `json:"metadata"`
}

type certProvider struct {
	PluginName string          `json:"plugin_name"`
	Config     fileWatcherConf `json:"config"`
}

type fileWatcherConf struct {
	CertificateFile   string `json:"certificate_file"`
	PrivateKeyFile    string `json:"private_key_file"`
	CACertificateFile string `json:"ca_certificate_file"`
	RefreshInterval   string `json:"refresh_interval"`
}

// GRPCServerListenerTemplate is Istio's inbound listener name for proxyless
// gRPC servers.
const GRPCServerListenerTemplate = "xds.istio.io/grpc/lds/inbound/%s"

// GRPC generates the gRPC xDS bootstrap (GRPC_XDS_BOOTSTRAP) as indented JSON.
func GRPC(o GRPCOptions) ([]byte, error) {
	if !filepath.IsAbs(o.XDSSocket) {
		return nil, fmt.Errorf("xDS socket path %q must be absolute so the application finds the agent's socket whatever its working directory", o.XDSSocket)
	}
	if !filepath.IsAbs(o.CertDir) {
		return nil, fmt.Errorf("certificate directory %q (OUTPUT_CERTS) must be absolute", o.CertDir)
	}
	nopts := o.Node
	nopts.ProxyType = Sidecar
	node, err := BuildNode(nopts)
	if err != nil {
		return nil, err
	}
	node.Metadata["GENERATOR"] = "grpc"
	refresh := o.RefreshInterval
	if refresh == 0 {
		refresh = 900 * time.Second
	}
	b := grpcBootstrap{
		XDSServers: []grpcServer{{
			ServerURI:      "unix://" + o.XDSSocket,
			ChannelCreds:   []channelCreds{{Type: "insecure"}},
			ServerFeatures: []string{"xds_v3"},
		}},
		Node: grpcNode(node),
		CertificateProviders: map[string]certProvider{"default": {
			PluginName: "file_watcher",
			Config: fileWatcherConf{
				CertificateFile:   filepath.Join(o.CertDir, CertChainFile),
				PrivateKeyFile:    filepath.Join(o.CertDir, KeyFile),
				CACertificateFile: filepath.Join(o.CertDir, RootCertFile),
				RefreshInterval:   fmt.Sprintf("%gs", refresh.Seconds()),
			},
		}},
		ServerListenerResourceNameTemplate: GRPCServerListenerTemplate,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("encoding gRPC bootstrap: %w", err)
	}
	return buf.Bytes(), nil
}
