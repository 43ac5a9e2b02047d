package kubetest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/webhook"
)

// startWebhooks serves /validate and /inject over TLS with a serving
// certificate from istiod-lite's CA, installs deploy/kubernetes/webhooks.yaml
// pointed at it (a URL instead of the in-cluster Service), and patches the
// CA bundle in as istiod-lite does at start. Everything is removed on cleanup
// so other tests are not subject to it.
func startWebhooks(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	authority, err := ca.New(ca.Options{Dir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := authority.ServerTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	in, err := webhook.NewInjector(webhook.InjectorOptions{ProxyImage: "meshlite/proxy:test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: webhook.Handler(&webhook.Validator{Logger: quietLogger()}, in), TLSConfig: tlsCfg, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(lis, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "https://" + lis.Addr().String()

	objs, err := readObjects(filepath.Join("..", "..", "deploy", "kubernetes", "webhooks.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	adm := cluster.Client.AdmissionregistrationV1()
	for _, o := range objs {
		switch o.GetKind() {
		case "ValidatingWebhookConfiguration":
			var cfg admissionregistrationv1.ValidatingWebhookConfiguration
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &cfg); err != nil {
				t.Fatal(err)
			}
			for i := range cfg.Webhooks {
				cfg.Webhooks[i].ClientConfig = urlConfig(base, cfg.Webhooks[i].ClientConfig)
			}
			if _, err := adm.ValidatingWebhookConfigurations().Create(ctx, &cfg, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = adm.ValidatingWebhookConfigurations().Delete(ctx, cfg.Name, metav1.DeleteOptions{}) })
		case "MutatingWebhookConfiguration":
			var cfg admissionregistrationv1.MutatingWebhookConfiguration
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &cfg); err != nil {
				t.Fatal(err)
			}
			for i := range cfg.Webhooks {
				cfg.Webhooks[i].ClientConfig = urlConfig(base, cfg.Webhooks[i].ClientConfig)
			}
			if _, err := adm.MutatingWebhookConfigurations().Create(ctx, &cfg, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = adm.MutatingWebhookConfigurations().Delete(ctx, cfg.Name, metav1.DeleteOptions{}) })
		}
	}
	if err := webhook.PatchCABundle(ctx, clients, authority.TrustBundlePEM(), webhook.ValidatingConfigName, webhook.MutatingConfigName); err != nil {
		t.Fatal(err)
	}
	v, err := adm.ValidatingWebhookConfigurations().Get(ctx, webhook.ValidatingConfigName, metav1.GetOptions{})
	if err != nil || len(v.Webhooks) == 0 || len(v.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Fatalf("CA bundle not patched into %s: %v", webhook.ValidatingConfigName, err)
	}
}

func urlConfig(base string, c admissionregistrationv1.WebhookClientConfig) admissionregistrationv1.WebhookClientConfig {
	u := base + *c.Service.Path
	return admissionregistrationv1.WebhookClientConfig{URL: &u}
}

// retryAdmission retries while the API server has not yet picked up a new
// webhook configuration (it watches them and applies them shortly after).
func retryAdmission(t *testing.T, f func() error, done func(error) bool) error {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if done(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestValidatingWebhookRefusesBadVirtualService: the real API server calls
// /validate and refuses the object with istiod-lite validate's message.
func TestValidatingWebhookRefusesBadVirtualService(t *testing.T) {
	requireCluster(t)
	ctx := context.Background()
	namespace(t, "validate-demo", nil)
	startWebhooks(t)

	vs := func(name string, w1, w2 int32) *networkingv1.VirtualService {
		return &networkingv1.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: networking.VirtualService{Hosts: []string{"greeter"}, Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
				{Destination: &networking.Destination{Host: "greeter", Subset: "v1"}, Weight: w1},
				{Destination: &networking.Destination{Host: "greeter", Subset: "v2"}, Weight: w2},
			}}}},
		}
	}
	api := istio.NetworkingV1().VirtualServices("validate-demo")
	err := retryAdmission(t, func() error {
		_, err := api.Create(ctx, vs("bad", 30, 30), metav1.CreateOptions{})
		if err == nil {
			_ = api.Delete(ctx, "bad", metav1.DeleteOptions{}) // created before the webhook was active; try again
			return errors.New("created")
		}
		return err
	}, func(err error) bool { return err != nil && err.Error() != "created" })
	if err == nil || err.Error() == "created" {
		t.Fatal("the API server stored a VirtualService whose weights sum to 60")
	}
	t.Logf("kubectl apply error: %v", err)
	want := webhook.ValidateObject(mustJSON(t, vs("bad", 30, 30)), "validate-demo", configOptions())
	if want == "" || !strings.Contains(err.Error(), "denied the request: "+want) || !strings.Contains(want, "route weights sum to 60; they must sum to 100") {
		t.Fatalf("kubectl apply error = %v; want the webhook's denial with %q", err, want)
	}
	if _, err := api.Create(ctx, vs("good", 50, 50), metav1.CreateOptions{}); err != nil {
		t.Fatalf("valid VirtualService refused: %v", err)
	}
}

// TestInjectionWebhookAddsAgent: a pod created in an istio-injection=enabled
// namespace comes back from the API server with the init and proxy containers.
func TestInjectionWebhookAddsAgent(t *testing.T) {
	requireCluster(t)
	ctx := context.Background()
	namespace(t, "inject-demo", map[string]string{webhook.LabelInjection: "enabled"}, "greeter")
	namespace(t, "plain-demo", nil)
	startWebhooks(t)

	pod := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "greeter-", Labels: map[string]string{"app": "greeter"},
				Annotations: map[string]string{webhook.AnnotationExcludeOutbound: "5432"}},
			Spec: corev1.PodSpec{ServiceAccountName: "greeter", Containers: []corev1.Container{{
				Name: "app", Image: "greeter:test",
				Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intOrName("http")}}},
			}}},
		}
	}
	pods := cluster.Client.CoreV1().Pods("inject-demo")
	var got *corev1.Pod
	_ = retryAdmission(t, func() error {
		p, err := pods.Create(ctx, pod(), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		got = p
		if len(p.Spec.InitContainers) == 0 {
			return errors.New("not injected")
		}
		return nil
	}, func(err error) bool { return err == nil })
	if got == nil {
		t.Fatal("pod not created")
	}
	var initNames, names []string
	for _, c := range got.Spec.InitContainers {
		initNames = append(initNames, c.Name)
	}
	for _, c := range got.Spec.Containers {
		names = append(names, c.Name)
	}
	if strings.Join(initNames, ",") != "istio-init" || strings.Join(names, ",") != "app,istio-proxy" {
		t.Fatalf("stored pod has init containers %v and containers %v; want [istio-init] and [app istio-proxy]", initNames, names)
	}
	if args := strings.Join(got.Spec.InitContainers[0].Args, " "); !strings.HasPrefix(args, "istio-iptables ") || !strings.Contains(args, "-o 5432") {
		t.Errorf("istio-init args = %q; want istio-iptables with the pod's outbound port exclusion", args)
	}
	if p := got.Spec.Containers[0].ReadinessProbe.HTTPGet; p == nil || p.Path != "/app-health/app/readyz" {
		t.Errorf("app readiness probe = %+v; want it rewritten to the agent's /app-health path", got.Spec.Containers[0].ReadinessProbe)
	}
	if got.Annotations[webhook.AnnotationStatus] == "" {
		t.Error("no sidecar.istio.io/status annotation")
	}

	// The native-sidecar and proxyless forms are accepted by the API server's
	// own pod validation too.
	for _, tc := range []struct {
		annotation, value string
		init, containers  string
	}{
		{webhook.AnnotationNativeSidecar, "true", "istio-init,istio-proxy", "app"},
		{webhook.AnnotationTemplates, webhook.TemplateGRPCAgent, "", "app,istio-proxy"},
	} {
		p := pod()
		p.Annotations[tc.annotation] = tc.value
		got, err := pods.Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s=%s: %v", tc.annotation, tc.value, err)
		}
		var in, cs []string
		for _, c := range got.Spec.InitContainers {
			in = append(in, c.Name)
		}
		for _, c := range got.Spec.Containers {
			cs = append(cs, c.Name)
		}
		if strings.Join(in, ",") != tc.init || strings.Join(cs, ",") != tc.containers {
			t.Errorf("%s=%s: init containers %v, containers %v; want [%s] and [%s]", tc.annotation, tc.value, in, cs, tc.init, tc.containers)
		}
	}

	// Not in an enabled namespace: untouched.
	p, err := cluster.Client.CoreV1().Pods("plain-demo").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "x"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Containers) != 1 || len(p.Spec.InitContainers) != 0 {
		t.Errorf("pod outside an injection namespace was injected: %d containers", len(p.Spec.Containers))
	}
}
