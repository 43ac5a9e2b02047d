package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// certDir writes a workload identity (cert, key, root) for a SPIFFE ID in the
// layout Istio's agent uses for OUTPUT_CERTS.
func certDir(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, spiffeID string) string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(spiffeID)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs:        []*url.URL{u},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cert-chain.pem", "CERTIFICATE", der)
	write("key.pem", "PRIVATE KEY", kb)
	write("root-cert.pem", "CERTIFICATE", ca.Raw)
	return dir
}

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// mtlsBootstrap is Istio's proxyless bootstrap with the file_watcher
// certificate provider instance "default" reading the agent's cert files.
func mtlsBootstrap(t *testing.T, addr, nodeID, certs string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": addr, "channel_creds": []any{map[string]any{"type": "insecure"}}, "server_features": []string{"xds_v3"}}},
		"node":        map[string]any{"id": nodeID, "metadata": map[string]any{"GENERATOR": "grpc"}},
		"certificate_providers": map[string]any{"default": map[string]any{
			"plugin_name": "file_watcher",
			"config": map[string]any{
				"certificate_file":    filepath.Join(certs, "cert-chain.pem"),
				"private_key_file":    filepath.Join(certs, "key.pem"),
				"ca_certificate_file": filepath.Join(certs, "root-cert.pem"),
				"refresh_interval":    "900s",
			},
		}},
		"server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProxylessMTLS: ISTIO_MUTUAL plus STRICT make a real grpc-go client and
// xDS server talk mTLS through the certificate-provider configs istiod-lite
// generates, verifying the server's SPIFFE identity.
func TestProxylessMTLS(t *testing.T) {
	ca, caKey := testCA(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint32(lis.Addr().(*net.TCPAddr).Port)
	reg := newStaticRegistry(&model.Snapshot{
		Version:  "1",
		Services: []*model.Service{greeterService(localEndpoint(port, "v1"))},
		DestinationRules: []*networkingv1.DestinationRule{mustYAML[networkingv1.DestinationRule](t, `
metadata: {name: greeter, namespace: demo}
spec: {host: greeter.demo.svc.cluster.local, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
`)},
		PeerAuthentications: []*securityv1.PeerAuthentication{mustYAML[securityv1.PeerAuthentication](t,
			`{metadata: {name: default, namespace: demo}, spec: {mtls: {mode: STRICT}}}`)},
	})
	_, addr := startServer(t, reg)

	serverCreds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	serving := make(chan error, 4)
	gs, err := xds.NewGRPCServer(grpc.Creds(serverCreds),
		xds.BootstrapContentsForTesting(mtlsBootstrap(t, addr, "sidecar~127.0.0.1~greeter-0.demo~demo.svc.cluster.local",
			certDir(t, ca, caKey, "spiffe://cluster.local/ns/demo/sa/greeter"))),
		xds.ServingModeCallback(func(_ net.Addr, args xds.ServingModeChangeArgs) {
			if args.Mode == 1 {
				serving <- nil
			} else if args.Err != nil {
				serving <- args.Err
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	testpb.RegisterTestServiceServer(gs, &backend{name: "greeter-mtls"})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	select {
	case err := <-serving:
		if err != nil {
			t.Fatalf("xDS server rejected its mTLS inbound listener: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("xDS server not serving within 15s")
	}

	clientCreds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	dial := func(spiffeID string) testpb.TestServiceClient {
		rb, err := xds.NewXDSResolverWithConfigForTesting(mtlsBootstrap(t, addr, clientNodeID, certDir(t, ca, caKey, spiffeID)))
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(greeterTarget, grpc.WithResolvers(rb), grpc.WithTransportCredentials(clientCreds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return testpb.NewTestServiceClient(cc)
	}
	if got := call(context.Background(), t, dial("spiffe://cluster.local/ns/demo/sa/client")); got != "greeter-mtls" {
		t.Fatalf("mTLS RPC answered by %q, want greeter-mtls", got)
	}

	// A plaintext client is refused by the STRICT server.
	plain := dialXDSInsecure(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := plain.UnaryCall(ctx, &testpb.SimpleRequest{}); err == nil {
		t.Fatal("a plaintext client reached a STRICT server")
	}
}

// dialXDSInsecure connects straight to the workloads the xDS resolver finds,
// without TLS (the cluster's TLS config is ignored with insecure creds).
func dialXDSInsecure(t *testing.T, addr string) testpb.TestServiceClient {
	return dialXDS(t, addr, "sidecar~10.0.9.10~plain.demo~demo.svc.cluster.local")
}
