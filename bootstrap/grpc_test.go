package bootstrap

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/xds"
)

func grpcOptions() GRPCOptions {
	return GRPCOptions{
		Node:      base(),
		XDSSocket: "/var/lib/meshlite/etc/istio/proxy/XDS",
		CertDir:   "/var/lib/meshlite/var/run/secrets/workload-spiffe-credentials",
	}
}

func TestGRPCGolden(t *testing.T) {
	got, err := GRPC(grpcOptions())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "grpc", got)

	var doc struct {
		XDSServers []struct {
			ServerURI string `json:"server_uri"`
		} `json:"xds_servers"`
		Node struct {
			ID       string         `json:"id"`
			Metadata map[string]any `json:"metadata"`
		} `json:"node"`
	}
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	if uri := doc.XDSServers[0].ServerURI; uri != "unix:///var/lib/meshlite/etc/istio/proxy/XDS" {
		t.Errorf("server_uri = %q: must be the agent socket's absolute path", uri)
	}
	if doc.Node.Metadata["GENERATOR"] != "grpc" {
		t.Errorf("GENERATOR = %v", doc.Node.Metadata["GENERATOR"])
	}
	if !strings.HasPrefix(doc.Node.ID, "sidecar~10.1.2.3~") {
		t.Errorf("node id = %q", doc.Node.ID)
	}
}

func TestGRPCRefusesRelativePaths(t *testing.T) {
	o := grpcOptions()
	o.XDSSocket = "./etc/istio/proxy/XDS"
	if _, err := GRPC(o); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative socket: %v", err)
	}
	o = grpcOptions()
	o.CertDir = "certs"
	if _, err := GRPC(o); err == nil || !strings.Contains(err.Error(), "OUTPUT_CERTS") {
		t.Errorf("relative cert dir: %v", err)
	}
}

// grpc-go's own bootstrap parser (reached through the xDS resolver, which
// parses the config when it is built) must accept what we write, including the
// file_watcher certificate provider's config.
func TestGRPCBootstrapAcceptedByGRPCGo(t *testing.T) {
	data, err := GRPC(grpcOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := buildXDSResolver(data); err != nil {
		t.Fatalf("grpc-go rejects our bootstrap: %v", err)
	}
	// The check is real: grpc-go rejects a broken certificate provider.
	broken := strings.Replace(string(data), `"refresh_interval": "900s"`, `"refresh_interval": "soon"`, 1)
	if err := buildXDSResolver([]byte(broken)); err == nil {
		t.Fatal("grpc-go accepted a malformed refresh_interval; the acceptance check proves nothing")
	}
}

func buildXDSResolver(data []byte) error {
	b, err := xds.NewXDSResolverWithConfigForTesting(data)
	if err != nil {
		return err
	}
	r, err := b.Build(resolver.Target{URL: url.URL{Scheme: "xds", Path: "/reviews.bookinfo.svc.cluster.local:9080"}}, nopClientConn{}, resolver.BuildOptions{})
	if err != nil {
		return err
	}
	r.Close()
	return nil
}

type nopClientConn struct{ resolver.ClientConn }

func (nopClientConn) UpdateState(resolver.State) error { return nil }
func (nopClientConn) ReportError(error)                {}
func (nopClientConn) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}
