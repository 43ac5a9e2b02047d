package kubeclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// apiServer answers the few requests the tests make, as the API server does.
func apiServer(t *testing.T) (*Clients, *[]string) {
	t.Helper()
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/version":
			_, _ = w.Write([]byte(`{"major":"1","minor":"34"}`))
		case "/apis/networking.istio.io/v1":
			_ = json.NewEncoder(w).Encode(metav1.APIResourceList{GroupVersion: "networking.istio.io/v1",
				APIResources: []metav1.APIResource{{Name: "virtualservices"}, {Name: "destinationrules"}}})
		case "/api/v1/namespaces/demo/services":
			_ = json.NewEncoder(w).Encode(corev1.ServiceList{TypeMeta: metav1.TypeMeta{Kind: "ServiceList", APIVersion: "v1"},
				Items: []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: "demo"}}}})
		case "/apis/networking.istio.io/v1/namespaces/demo/virtualservices/greeter":
			_ = json.NewEncoder(w).Encode(networkingv1.VirtualService{TypeMeta: metav1.TypeMeta{Kind: "VirtualService", APIVersion: "networking.istio.io/v1"},
				ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: "demo"}})
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound, Message: "not found"})
		}
	}))
	t.Cleanup(srv.Close)
	c, err := New(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c, &seen
}

func TestRequestsReachTheirGroupPaths(t *testing.T) {
	c, seen := apiServer(t)
	ctx := context.Background()
	if err := c.ServerVersion(ctx); err != nil {
		t.Fatalf("ServerVersion: %v", err)
	}
	served, err := c.ServedResources(ctx, "networking.istio.io/v1")
	if err != nil || !served["virtualservices"] || served["gateways"] {
		t.Fatalf("ServedResources = %v, %v; want virtualservices and destinationrules only", served, err)
	}
	list, err := c.Services("demo").List(ctx, metav1.ListOptions{LabelSelector: "app=greeter"})
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "greeter" {
		t.Fatalf("Services.List = %+v, %v", list, err)
	}
	vs, err := c.VirtualServices("demo").Get(ctx, "greeter", metav1.GetOptions{})
	if err != nil || vs.Name != "greeter" {
		t.Fatalf("VirtualServices.Get = %+v, %v", vs, err)
	}
	if _, err := c.ConfigMaps("demo").Get(ctx, "istio-ca-root-cert", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("missing ConfigMap: err %v, want NotFound as client-go reports it", err)
	}
	want := []string{
		"GET /version",
		"GET /apis/networking.istio.io/v1",
		"GET /api/v1/namespaces/demo/services?labelSelector=app%3Dgreeter",
		"GET /apis/networking.istio.io/v1/namespaces/demo/virtualservices/greeter",
		"GET /api/v1/namespaces/demo/configmaps/istio-ca-root-cert",
	}
	if len(*seen) != len(want) {
		t.Fatalf("requests %q, want %q", *seen, want)
	}
	for i := range want {
		if (*seen)[i] != want[i] {
			t.Errorf("request %d = %q, want %q", i, (*seen)[i], want[i])
		}
	}
}
