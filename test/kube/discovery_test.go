package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "istio.io/api/security/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// TestDiscoveryBinaryOnKubernetes runs the real `istiod-lite discovery
// --registries Kubernetes` against the real API server, as the Deployment in
// deploy/kubernetes does: it must become ready, see Services, publish the mesh
// root into namespaces, keep the webhooks' caBundle patched, and sign a CSR
// authenticated by TokenReview on its TLS port.
func TestDiscoveryBinaryOnKubernetes(t *testing.T) {
	c := requireCluster(t)
	ctx := context.Background()
	bin := istiodLite(t)
	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, dir)

	// The webhook configurations exist before istiod-lite patches them.
	objs, err := readObjects(filepath.Join("..", "..", "deploy", "kubernetes", "webhooks.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "ValidatingWebhookConfiguration" {
			continue
		}
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &vwc); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &vwc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// It points at a Service this cluster lacks: leave no webhook behind
		// to fail the other scenarios' writes.
		t.Cleanup(func() {
			_ = c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), vwc.Name, metav1.DeleteOptions{})
		})
	}

	const ns = "discovery-bin"
	namespace(t, ns, nil, "greeter")
	secure, httpAddr, webhook := freeAddr(t), freeAddr(t), freeAddr(t)
	caDir := filepath.Join(dir, "ca")
	var logs bytes.Buffer
	cmd := exec.Command(bin, "discovery", "--registries", "Kubernetes", "--kubeconfig", kubeconfig,
		"--tokenAuth", "tokenreview", "--caDir", caDir, "--grpcAddr", "", "--secureGRPCAddr", secure,
		"--httpAddr", httpAddr, "--webhookAddr", webhook, "--tlsExtraSANs", "127.0.0.1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("istiod-lite log:\n%s", logs.String())
		}
	})

	eventually(t, 30*time.Second, "istiod-lite /ready", func() error { return httpOK("http://" + httpAddr + "/ready") })

	// A Service with an EndpointSlice reaches the registry.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070}}}}
	if _, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	port, ready, name := int32(7070), true, "grpc"
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "greeter-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "greeter"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.2.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
	if _, err := c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the Service in /debug/registryz", func() error {
		body, err := httpGet("http://" + httpAddr + "/debug/registryz")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "greeter."+ns+".svc.cluster.local") || !strings.Contains(body, "10.1.2.3") {
			return fmt.Errorf("registryz lacks greeter and its endpoint: %.300s", body)
		}
		return nil
	})

	root, err := os.ReadFile(filepath.Join(caDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "istio-ca-root-cert published", func() error {
		cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["root-cert.pem"] != string(root) {
			return fmt.Errorf("istio-ca-root-cert differs from %s/root-cert.pem", caDir)
		}
		return nil
	})
	eventually(t, 20*time.Second, "validating webhook caBundle patched", func() error {
		vwc, err := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "istiod-lite-validator", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, w := range vwc.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, root) {
				return fmt.Errorf("webhook %s caBundle is not the CA root", w.Name)
			}
		}
		return nil
	})

	// A TokenRequest token (as the kubelet projects it) gets a certificate
	// for its own identity from the binary's TLS port.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	cc, err := grpc.NewClient(secure, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	token := mintToken(t, ns, "greeter", []string{"istio-ca"}, nil)
	own := "spiffe://cluster.local/ns/" + ns + "/sa/greeter"
	rctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), 10*time.Second)
	defer cancel()
	resp, err := pb.NewIstioCertificateServiceClient(cc).CreateCertificate(rctx, &pb.IstioCertificateRequest{Csr: csrFor(t, own), ValidityDuration: 3600})
	if err != nil {
		t.Fatalf("CSR with a TokenRequest token refused: %v", err)
	}
	if len(resp.GetCertChain()) < 2 {
		t.Fatalf("cert chain has %d entries, want leaf and root", len(resp.GetCertChain()))
	}
}

func istiodLite(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("MESHLITE_BIN"); d != "" {
		return filepath.Join(d, "istiod-lite")
	}
	out := filepath.Join(t.TempDir(), "istiod-lite")
	if b, err := exec.Command("go", "build", "-o", out, "../../cmd/istiod-lite").CombinedOutput(); err != nil {
		t.Fatalf("building istiod-lite: %v\n%s", err, b)
	}
	return out
}

// writeKubeconfig turns the harness's admin rest.Config into a kubeconfig file.
func writeKubeconfig(t *testing.T, dir string) string {
	t.Helper()
	rc := cluster.Config
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData, InsecureSkipTLSVerify: rc.Insecure}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: rc.BearerToken, ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
	}
	return string(b), err
}

func httpOK(url string) error { _, err := httpGet(url); return err }
