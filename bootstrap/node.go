package bootstrap

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Env prefixes that feed node metadata, as in Istio.
const (
	metaPrefix     = "ISTIO_META_"
	metaJSONPrefix = "ISTIO_METAJSON_"
)

// Node is the identity Envoy (or grpc-go) presents to the control plane.
type Node struct {
	ID       string
	Cluster  string
	Metadata map[string]any
}

// withDefaults fills the zero-valued fields of o; it never mutates the caller's
// maps.
func (o Options) withDefaults() Options {
	if o.ProxyType == "" {
		o.ProxyType = Sidecar
	}
	if o.Domain == "" && o.Namespace != "" {
		o.Domain = o.Namespace + ".svc.cluster.local"
	}
	if o.AdminPort == 0 {
		o.AdminPort = DefaultAdminPort
	}
	if o.StatusPort == 0 {
		o.StatusPort = DefaultStatusPort
	}
	if o.ReadinessPort == 0 {
		o.ReadinessPort = DefaultReadinessPort
	}
	if o.PrometheusPort == 0 {
		o.PrometheusPort = DefaultPrometheusPort
	}
	if o.MaxDownstreamConnections == 0 {
		o.MaxDownstreamConnections = 2147483647
	}
	return o
}

func (o Options) check() error {
	if o.ProxyType != Sidecar && o.ProxyType != Router {
		return fmt.Errorf("proxy type %q is not supported: use %q or %q", o.ProxyType, Sidecar, Router)
	}
	if len(o.InstanceIPs) == 0 {
		return fmt.Errorf("no instance IP: set INSTANCE_IP to the workload's IP address")
	}
	for _, ip := range o.InstanceIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("instance IP %q is not an IP address: set INSTANCE_IP to the workload's IP", ip)
		}
	}
	if o.PodName == "" {
		return fmt.Errorf("no pod name: set POD_NAME (the downward API's metadata.name)")
	}
	if o.Namespace == "" {
		return fmt.Errorf("no namespace: set POD_NAMESPACE (the downward API's metadata.namespace)")
	}
	return nil
}

// IPv6 reports whether the node's primary IP is IPv6; Envoy then binds its
// admin to ::1 and its listeners to [::], as Istio does.
func (o Options) IPv6() bool {
	if len(o.InstanceIPs) == 0 {
		return false
	}
	a, err := netip.ParseAddr(o.InstanceIPs[0])
	return err == nil && a.Is6() && !a.Is4In6()
}

// NodeID is Istio's "<type>~<ip>~<pod>.<ns>~<domain>".
func NodeID(proxyType, ip, pod, namespace, domain string) string {
	return fmt.Sprintf("%s~%s~%s.%s~%s", proxyType, ip, pod, namespace, domain)
}

// AppName is the workload's app as Istio finds it: the "app" label, then
// "app.kubernetes.io/name", else the pod name.
func AppName(labels map[string]string, pod string) string {
	for _, k := range []string{"app", "app.kubernetes.io/name"} {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return pod
}

// BuildNode computes the node ID, cluster and metadata for o.
func BuildNode(o Options) (Node, error) {
	o = o.withDefaults()
	if err := o.check(); err != nil {
		return Node{}, err
	}
	md, err := NodeMetadata(o)
	if err != nil {
		return Node{}, err
	}
	return Node{
		ID:       NodeID(o.ProxyType, o.InstanceIPs[0], o.PodName, o.Namespace, o.Domain),
		Cluster:  AppName(o.Labels, o.PodName) + "." + o.Namespace,
		Metadata: md,
	}, nil
}

// NodeMetadata builds Istio's node metadata. Precedence, lowest first:
// ISTIO_META_* strings, ISTIO_METAJSON_* objects, the agent's own facts
// (namespace, IPs, ...), then ExtraMetadata. LABELS and ANNOTATIONS are merged
// rather than replaced, so the downward-API files and ISTIO_METAJSON_LABELS
// both contribute (the files win on conflicts).
func NodeMetadata(o Options) (map[string]any, error) {
	o = o.withDefaults()
	md := map[string]any{}
	env := slices.Clone(o.Env)
	slices.Sort(env) // deterministic when a key repeats
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(k, metaJSONPrefix):
			name := strings.TrimPrefix(k, metaJSONPrefix)
			var obj map[string]any
			if err := json.Unmarshal([]byte(v), &obj); err != nil {
				return nil, fmt.Errorf("env %s is not a JSON object (%v): fix or unset it", k, err)
			}
			md[name] = obj
		case strings.HasPrefix(k, metaPrefix):
			md[strings.TrimPrefix(k, metaPrefix)] = v
		}
	}

	labels := stringMap(md["LABELS"])
	maps.Copy(labels, o.Labels)
	annotations := stringMap(md["ANNOTATIONS"])
	maps.Copy(annotations, o.Annotations)

	set := func(k string, v any) {
		switch x := v.(type) {
		case string:
			if x == "" {
				return
			}
		case map[string]any:
			if len(x) == 0 {
				return
			}
		}
		md[k] = v
	}
	set("NAME", o.PodName)
	set("POD_NAME", o.PodName)
	set("NAMESPACE", o.Namespace)
	set("SERVICE_ACCOUNT", o.ServiceAccount)
	set("CLUSTER_ID", o.ClusterID)
	set("MESH_ID", o.MeshID)
	set("ISTIO_VERSION", o.IstioVersion)
	set("INSTANCE_IPS", strings.Join(o.InstanceIPs, ","))
	set("LABELS", anyMap(labels))
	set("ANNOTATIONS", anyMap(annotations))
	set("ENVOY_STATUS_PORT", float64(o.ReadinessPort))
	set("ENVOY_PROMETHEUS_PORT", float64(o.PrometheusPort))
	if _, ok := md["WORKLOAD_NAME"]; !ok {
		set("WORKLOAD_NAME", AppName(o.Labels, o.PodName))
	}
	maps.Copy(md, o.ExtraMetadata)
	return md, nil
}

func stringMap(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			switch s := x.(type) {
			case string:
				out[k] = s
			default:
				b, _ := json.Marshal(s)
				out[k] = string(b)
			}
		}
	}
	return out
}

func anyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
