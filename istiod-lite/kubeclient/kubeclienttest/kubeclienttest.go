// Package kubeclienttest adapts client-go's clientsets, real or fake, to
// kubeclient.Clients, so tests can use client-go's fakes and object
// trackers. Only tests import it: linking the clientsets is what kubeclient
// exists to avoid in the binary.
package kubeclienttest

import (
	"context"
	"errors"
	"strings"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
)

// FromClientsets returns Clients backed by kc and, for the Istio kinds, ic.
// With a nil ic the API server serves no Istio kinds.
func FromClientsets(kc kubernetes.Interface, ic istioclient.Interface) *kubeclient.Clients {
	c := &kubeclient.Clients{
		Services: func(ns string) kubeclient.Reader[*corev1.Service, *corev1.ServiceList] {
			return kc.CoreV1().Services(ns)
		},
		Pods: func(ns string) kubeclient.Reader[*corev1.Pod, *corev1.PodList] { return kc.CoreV1().Pods(ns) },
		Namespaces: func() kubeclient.Reader[*corev1.Namespace, *corev1.NamespaceList] {
			return kc.CoreV1().Namespaces()
		},
		ConfigMaps: func(ns string) kubeclient.Writer[*corev1.ConfigMap, *corev1.ConfigMapList] {
			return kc.CoreV1().ConfigMaps(ns)
		},
		EndpointSlices: func(ns string) kubeclient.Reader[*discoveryv1.EndpointSlice, *discoveryv1.EndpointSliceList] {
			return kc.DiscoveryV1().EndpointSlices(ns)
		},
		TokenReviews: func() kubeclient.Creator[*authenticationv1.TokenReview] {
			return kc.AuthenticationV1().TokenReviews()
		},
		ValidatingWebhookConfigurations: func() kubeclient.Writer[*admissionregistrationv1.ValidatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfigurationList] {
			return kc.AdmissionregistrationV1().ValidatingWebhookConfigurations()
		},
		MutatingWebhookConfigurations: func() kubeclient.Writer[*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.MutatingWebhookConfigurationList] {
			return kc.AdmissionregistrationV1().MutatingWebhookConfigurations()
		},
		ServerVersion: func(context.Context) error {
			_, err := kc.Discovery().ServerVersion()
			return err
		},
		ServedResources: func(_ context.Context, gv string) (map[string]bool, error) {
			var d interface {
				ServerResourcesForGroupVersion(string) (*metav1.APIResourceList, error)
			} = kc.Discovery()
			if strings.HasSuffix(strings.SplitN(gv, "/", 2)[0], "istio.io") {
				if ic == nil {
					return nil, errors.New("no Istio clientset")
				}
				d = ic.Discovery()
			}
			list, err := d.ServerResourcesForGroupVersion(gv)
			if err != nil {
				return nil, err
			}
			out := map[string]bool{}
			for _, r := range list.APIResources {
				out[r.Name] = true
			}
			return out, nil
		},
		REST: kc.CoreV1().RESTClient(),
	}
	if ic == nil {
		return c
	}
	c.VirtualServices = func(ns string) kubeclient.Reader[*networkingv1.VirtualService, *networkingv1.VirtualServiceList] {
		return ic.NetworkingV1().VirtualServices(ns)
	}
	c.DestinationRules = func(ns string) kubeclient.Reader[*networkingv1.DestinationRule, *networkingv1.DestinationRuleList] {
		return ic.NetworkingV1().DestinationRules(ns)
	}
	c.Gateways = func(ns string) kubeclient.Reader[*networkingv1.Gateway, *networkingv1.GatewayList] {
		return ic.NetworkingV1().Gateways(ns)
	}
	c.Sidecars = func(ns string) kubeclient.Reader[*networkingv1.Sidecar, *networkingv1.SidecarList] {
		return ic.NetworkingV1().Sidecars(ns)
	}
	c.ServiceEntries = func(ns string) kubeclient.Reader[*networkingv1.ServiceEntry, *networkingv1.ServiceEntryList] {
		return ic.NetworkingV1().ServiceEntries(ns)
	}
	c.WorkloadEntries = func(ns string) kubeclient.Reader[*networkingv1.WorkloadEntry, *networkingv1.WorkloadEntryList] {
		return ic.NetworkingV1().WorkloadEntries(ns)
	}
	c.PeerAuthentications = func(ns string) kubeclient.Reader[*securityv1.PeerAuthentication, *securityv1.PeerAuthenticationList] {
		return ic.SecurityV1().PeerAuthentications(ns)
	}
	c.AuthorizationPolicies = func(ns string) kubeclient.Reader[*securityv1.AuthorizationPolicy, *securityv1.AuthorizationPolicyList] {
		return ic.SecurityV1().AuthorizationPolicies(ns)
	}
	return c
}
