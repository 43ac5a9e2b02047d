package webhook

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// prober is one entry of ISTIO_KUBE_APP_PROBERS: the application's original
// probe, which the agent's status server runs when the kubelet calls the
// rewritten /app-health path. With mTLS STRICT the kubelet could not reach
// the application directly.
type prober struct {
	HTTPGet        *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *corev1.GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32                   `json:"timeoutSeconds,omitempty"`
}

// probePath is the status server path of a container's probe, as in Istio.
func probePath(container, kind string) string {
	return fmt.Sprintf("/app-health/%s/%s", container, kind)
}

type probeSlot struct {
	kind string
	get  func(*corev1.Container) **corev1.Probe
}

var probeSlots = []probeSlot{
	{"readyz", func(c *corev1.Container) **corev1.Probe { return &c.ReadinessProbe }},
	{"livez", func(c *corev1.Container) **corev1.Probe { return &c.LivenessProbe }},
	{"startupz", func(c *corev1.Container) **corev1.Probe { return &c.StartupProbe }},
}

// appProbers collects the probes to rewrite, with named ports resolved to
// numbers (the agent does not know the container's port names).
func appProbers(pod *corev1.Pod) map[string]*prober {
	out := map[string]*prober{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Name == ProxyContainer {
			continue
		}
		for _, s := range probeSlots {
			p := *s.get(c)
			if p == nil {
				continue
			}
			pr := &prober{TimeoutSeconds: p.TimeoutSeconds}
			switch {
			case p.HTTPGet != nil:
				h := p.HTTPGet.DeepCopy()
				h.Port = resolvePort(c, h.Port)
				pr.HTTPGet = h
			case p.TCPSocket != nil:
				t := p.TCPSocket.DeepCopy()
				t.Port = resolvePort(c, t.Port)
				pr.TCPSocket = t
			case p.GRPC != nil:
				pr.GRPC = p.GRPC.DeepCopy()
			default:
				continue // exec probes run in the container and need no rewrite
			}
			out[probePath(c.Name, s.kind)] = pr
		}
	}
	return out
}

// rewriteProbes points each collected probe at the agent's status port.
func rewriteProbes(pod *corev1.Pod, probers map[string]*prober) {
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, s := range probeSlots {
			slot := s.get(c)
			path := probePath(c.Name, s.kind)
			if *slot == nil || probers[path] == nil {
				continue
			}
			p := (*slot).DeepCopy()
			p.ProbeHandler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(StatusPort), Scheme: corev1.URISchemeHTTP,
			}}
			*slot = p
		}
	}
}

func resolvePort(c *corev1.Container, p intstr.IntOrString) intstr.IntOrString {
	if p.Type != intstr.String {
		return p
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return intstr.FromInt32(cp.ContainerPort)
		}
	}
	return p
}
