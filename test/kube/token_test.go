package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/authn"
	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	// Typed Istio objects carry no apiVersion/kind; the API server adds them.
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["apiVersion"], m["kind"] = "networking.istio.io/v1", "VirtualService"
	b, _ = json.Marshal(m)
	return b
}

func configOptions() config.Options { return config.Options{} }

func intOrName(s string) intstr.IntOrString { return intstr.FromString(s) }

// mintToken asks the API server for a projected-style token, as the kubelet
// does for the istio-token volume.
func mintToken(t *testing.T, ns, sa string, audiences []string, boundPod *metav1.ObjectMeta) string {
	t.Helper()
	exp := int64(600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp}}
	if boundPod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: boundPod.Name, UID: boundPod.UID}
	}
	res, err := cluster.Client.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status.Token
}

func csrFor(t *testing.T, spiffeID string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(spiffeID)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// TestTokenRequestTokenGetsOwnCertificate: a TokenRequest-minted token (the
// agent's istio-token) gets a certificate for its own service account through
// TokenReview, and is refused for another account, for another audience, and
// once its pod is deleted.
func TestTokenRequestTokenGetsOwnCertificate(t *testing.T) {
	requireCluster(t)
	ctx := context.Background()
	const ns = "token-demo"
	namespace(t, ns, nil, "greeter", "other")
	pod := runningPod(t, ns, "greeter-1", "", map[string]string{"app": "greeter"})

	authority, err := ca.New(ca.Options{Dir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	pods := cluster.Client.CoreV1()
	tr, err := authn.NewTokenReview(authn.TokenReviewOptions{
		Client: clients, Logger: quietLogger(),
		Pods: func(ns, name, uid string) bool {
			p, err := pods.Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return err == nil && string(p.UID) == uid
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.NewServer(authority, ca.ServerOptions{Authenticator: tr, Registerer: prometheus.NewRegistry(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := authority.ServerTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: authority.TrustPool(), ServerName: ca.IstiodSAN, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := pb.NewIstioCertificateServiceClient(cc)
	sign := func(token, id string) (*pb.IstioCertificateResponse, error) {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token, "ClusterID", "Kubernetes"), 10*time.Second)
		defer cancel()
		return client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csrFor(t, id)})
	}
	own := "spiffe://cluster.local/ns/" + ns + "/sa/greeter"

	token := mintToken(t, ns, "greeter", []string{"istio-ca"}, &pod.ObjectMeta)
	resp, err := sign(token, own)
	if err != nil {
		t.Fatalf("certificate for the token's own service account refused: %v", err)
	}
	block, _ := pem.Decode([]byte(resp.CertChain[0]))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != own {
		t.Errorf("certificate SANs = %v, want %s", cert.URIs, own)
	}

	if _, err := sign(token, "spiffe://cluster.local/ns/"+ns+"/sa/other"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("certificate for another service account: err = %v, want PermissionDenied", err)
	}
	if _, err := sign(mintToken(t, ns, "greeter", []string{"api"}, nil), own); status.Code(err) != codes.Unauthenticated {
		t.Errorf("token for another audience: err = %v, want Unauthenticated", err)
	}

	// The pod goes away: its token is refused, from the cache and by the API server.
	if err := pods.Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "pod deleted", func() error {
		_, err := pods.Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil {
			return errFound
		}
		return nil
	})
	if _, err := sign(token, own); status.Code(err) != codes.Unauthenticated {
		t.Errorf("token of a deleted pod (cached): err = %v, want Unauthenticated", err)
	}
	// Without istiod-lite's cache, the API server refuses it too, once its own
	// authentication cache (10 s for successes) has expired.
	eventually(t, 30*time.Second, "the API server refuses the token of a deleted pod", func() error {
		fresh, _ := authn.NewTokenReview(authn.TokenReviewOptions{Client: clients, Logger: quietLogger()})
		if _, err := fresh.Authenticate(metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))); err == nil {
			return errors.New("TokenReview still accepts it")
		}
		return nil
	})
}

var errFound = errors.New("still present")

// TestOfflineJWKSVerifiesTokenRequestTokens: --tokenAuth jwks fetches the
// cluster issuer's keys once and verifies the same tokens without the API server.
func TestOfflineJWKSVerifiesTokenRequestTokens(t *testing.T) {
	c := requireCluster(t)
	const ns = "jwks-demo"
	namespace(t, ns, nil, "greeter")
	file, issuer, err := authn.FetchIssuerJWKS(context.Background(), c.Client.CoreV1().RESTClient(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if issuer != Issuer {
		t.Errorf("issuer = %q, want %q", issuer, Issuer)
	}
	j, err := authn.NewJWT(authn.JWTOptions{JWKSFile: file, Issuer: issuer, Audiences: []string{authn.DefaultCAAudience}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	bearer := func(tok string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	}
	id, err := j.Authenticate(bearer(mintToken(t, ns, "greeter", []string{"istio-ca"}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if id.Namespace != ns || id.ServiceAccount != "greeter" {
		t.Errorf("identity = %+v", id)
	}
	if _, err := j.Authenticate(bearer(mintToken(t, ns, "greeter", []string{"api"}, nil))); err == nil {
		t.Error("token for another audience accepted offline")
	}
}

// TestRBACManifestSuffices runs the registry and TokenReview with a token of
// the istiod-lite service account bound by deploy/kubernetes/rbac.yaml, so a
// missing permission fails here rather than in a user's cluster.
func TestRBACManifestSuffices(t *testing.T) {
	c := requireCluster(t)
	ctx := context.Background()
	namespace(t, "istio-system", nil, "istiod-lite")
	objs, err := readObjects(filepath.Join("..", "..", "deploy", "kubernetes", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &b, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected %s in rbac.yaml", o.GetKind())
		}
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = mintToken(t, "istio-system", "istiod-lite", nil, nil)
	reg, _ := startIstiod(t, cfg) // fails unless every informer may list and watch

	sa, err := kubeclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := authn.NewTokenReview(authn.TokenReviewOptions{Client: sa, Logger: quietLogger(), Pods: authn.PodListerChecker(reg.PodLister())})
	id, err := tr.Authenticate(metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+mintToken(t, "istio-system", "istiod-lite", []string{"istio-ca"}, nil))))
	if err != nil {
		t.Fatalf("TokenReview as istiod-lite: %v", err)
	}
	if id.ServiceAccount != "istiod-lite" {
		t.Errorf("identity = %+v", id)
	}
	// Not granted: writing pods.
	saKube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := saKube.CoreV1().Pods("istio-system").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("istiod-lite created a pod (err %v); the ClusterRole grants more than it should", err)
	}
}
