package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TestSecureADS serves ADS with an injected *tls.Config (what
// --secureGRPCAddr does with the CA's serving certificate) and checks a
// client that trusts the root gets its config.
func TestSecureADS(t *testing.T) {
	ca, caKey := testCA(t)
	dir := certDir(t, ca, caKey, "spiffe://cluster.local/ns/istio-system/sa/istiod")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert-chain.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s := New(newStaticRegistry(testSnapshot(t, "1")), quiet)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gs := s.NewGRPCServer(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	go func() { _ = Serve(ctx, gs, lis, time.Second) }()

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	// The test certificate has only a SPIFFE URI SAN, so verify the chain and skip the host name.
	creds := credentials.NewTLS(&tls.Config{RootCAs: roots, InsecureSkipVerify: true, VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
		c, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		_, err = c.Verify(x509.VerifyOptions{Roots: roots})
		return err
	}})
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: grpcNode(t, "sidecar~10.0.9.5~tls.demo~demo.svc.cluster.local"), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if resp := recvTimeout(t, stream.Recv); len(resp.GetResources()) != 3 {
		t.Fatalf("got %d clusters over TLS, want 3", len(resp.GetResources()))
	}
}
