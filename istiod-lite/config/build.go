package config

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// DefaultMeshConfig is the mesh configuration used when the set has no
// MeshConfig document; a document's fields override these.
func DefaultMeshConfig() *meshv1alpha1.MeshConfig {
	return &meshv1alpha1.MeshConfig{
		TrustDomain:   "cluster.local",
		RootNamespace: "istio-system",
	}
}

// Build turns a validated Set into the immutable Snapshot that xDS generation
// reads. It is deterministic: equal content gives an equal Snapshot and Version.
func Build(set *Set) *model.Snapshot {
	domain := set.Options.withDefaults().DomainSuffix
	snap := &model.Snapshot{Mesh: DefaultMeshConfig()}
	if set.Options.Mesh != nil {
		proto.Merge(snap.Mesh, set.Options.Mesh)
	}
	if m := set.Mesh(); m != nil {
		proto.Merge(snap.Mesh, m)
	}

	var (
		services  []*corev1.Service
		endpoints = map[string]*corev1.Endpoints{}            // ns/name
		bySvc     = map[string][]*discoveryv1.EndpointSlice{} // ns/service-name
		workloads []*networkingv1.WorkloadEntry
	)
	for _, o := range set.Objects {
		snap.Objects = append(snap.Objects, model.Object{Kind: o.Kind, Name: o.Name, Namespace: o.Namespace, Source: o.Source})
		switch v := o.Value.(type) {
		case *corev1.Service:
			services = append(services, v)
		case *corev1.Endpoints:
			endpoints[v.Namespace+"/"+v.Name] = v
		case *discoveryv1.EndpointSlice:
			k := v.Namespace + "/" + v.Labels[discoveryv1.LabelServiceName]
			bySvc[k] = append(bySvc[k], v)
		case *networkingv1.WorkloadEntry:
			workloads = append(workloads, v)
			snap.WorkloadEntries = append(snap.WorkloadEntries, v)
		case *networkingv1.ServiceEntry:
			snap.ServiceEntries = append(snap.ServiceEntries, v)
		case *networkingv1.VirtualService:
			snap.VirtualServices = append(snap.VirtualServices, v)
		case *networkingv1.DestinationRule:
			snap.DestinationRules = append(snap.DestinationRules, v)
		case *networkingv1.Gateway:
			snap.Gateways = append(snap.Gateways, v)
		case *networkingv1.Sidecar:
			snap.Sidecars = append(snap.Sidecars, v)
		case *securityv1.PeerAuthentication:
			snap.PeerAuthentications = append(snap.PeerAuthentications, v)
		case *securityv1.AuthorizationPolicy:
			snap.AuthorizationPolicies = append(snap.AuthorizationPolicies, v)
		}
	}

	wi := newWorkloadIndex(workloads)
	for _, svc := range services {
		snap.Services = append(snap.Services, kubeService(svc, domain, endpoints[svc.Namespace+"/"+svc.Name], bySvc[svc.Namespace+"/"+svc.Name], wi))
	}
	// Cluster names carry only the hostname, so a host is served once: a
	// Kubernetes Service wins over a ServiceEntry, then the first ServiceEntry
	// by namespace and name.
	seen := map[string]bool{}
	for _, s := range snap.Services {
		seen[s.Hostname] = true
	}
	for _, se := range snap.ServiceEntries {
		for _, s := range serviceEntryServices(se, wi) {
			if !seen[s.Hostname] {
				seen[s.Hostname] = true
				snap.Services = append(snap.Services, s)
			}
		}
	}
	slices.SortFunc(snap.Services, func(a, b *model.Service) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	snap.Version = version(set, snap)
	return snap
}

// kubeService builds a Kubernetes Service's model, merging the endpoints from
// its Endpoints, EndpointSlices and the WorkloadEntries its selector matches
// (Istio lets a Service select WorkloadEntries, which is how VMs join it).
func kubeService(svc *corev1.Service, domain string, eps *corev1.Endpoints, eslices []*discoveryv1.EndpointSlice, wi workloadIndex) *model.Service {
	s := &model.Service{
		Hostname:   svc.Name + "." + svc.Namespace + ".svc." + domain,
		Name:       svc.Name,
		Namespace:  svc.Namespace,
		Resolution: model.ResolutionStatic,
		Labels:     maps.Clone(svc.Labels),
	}
	for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if ip != "" && ip != corev1.ClusterIPNone && !slices.Contains(s.Addresses, ip) {
			s.Addresses = append(s.Addresses, ip)
		}
	}
	for _, p := range svc.Spec.Ports {
		if p.Protocol == corev1.ProtocolUDP || p.Protocol == corev1.ProtocolSCTP {
			continue // the sidecar proxies TCP only, as in Istio
		}
		mp := model.Port{Name: p.Name, Port: uint32(p.Port), Protocol: model.PortProtocol(p.Name, deref(p.AppProtocol))}
		if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal != 0 {
			mp.TargetPort = uint32(p.TargetPort.IntVal)
		}
		s.Ports = append(s.Ports, mp)
	}
	sortPorts(s.Ports)

	m := newEndpointMerger()
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		s.Resolution = model.ResolutionDNS
		s.MeshExternal = true
		m.add(model.Endpoint{Address: svc.Spec.ExternalName, Ports: portNumbers(s.Ports), Healthy: true, Weight: 1})
	}
	if eps != nil {
		for _, ss := range eps.Subsets {
			ports := map[string]uint32{}
			for _, p := range ss.Ports {
				ports[p.Name] = uint32(p.Port)
			}
			for _, a := range ss.Addresses {
				m.add(model.Endpoint{Address: a.IP, Ports: maps.Clone(ports), Namespace: svc.Namespace, Healthy: true, Weight: 1})
			}
			for _, a := range ss.NotReadyAddresses {
				m.add(model.Endpoint{Address: a.IP, Ports: maps.Clone(ports), Namespace: svc.Namespace, Weight: 1})
			}
		}
	}
	for _, sl := range eslices {
		ports := map[string]uint32{}
		for _, p := range sl.Ports {
			if p.Port != nil {
				ports[deref(p.Name)] = uint32(*p.Port)
			}
		}
		for _, ep := range sl.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			for _, a := range ep.Addresses {
				m.add(model.Endpoint{Address: a, Ports: maps.Clone(ports), Namespace: svc.Namespace, Healthy: ready, Weight: 1, Locality: zoneLocality(ep.Zone)})
			}
		}
	}
	if len(svc.Spec.Selector) > 0 {
		for _, we := range wi.selected(svc.Namespace, svc.Spec.Selector) {
			m.add(workloadEndpoint(&we.Spec, we.Namespace, s.Ports))
		}
	}
	s.Endpoints = m.list()
	return s
}

// serviceEntryServices makes one service per ServiceEntry host. Endpoints come
// from inline endpoints, or the WorkloadEntries its workloadSelector matches;
// a DNS entry without endpoints resolves its own hostname.
func serviceEntryServices(se *networkingv1.ServiceEntry, wi workloadIndex) []*model.Service {
	var ports []model.Port
	for _, p := range se.Spec.Ports {
		if strings.EqualFold(p.Protocol, "UDP") {
			continue
		}
		proto := model.PortProtocol(p.Name, "")
		if p.Protocol != "" {
			proto = model.ParseProtocol(p.Protocol)
		}
		ports = append(ports, model.Port{Name: p.Name, Port: p.Number, TargetPort: p.TargetPort, Protocol: proto})
	}
	sortPorts(ports)
	res := model.ResolutionPassthrough
	switch se.Spec.Resolution {
	case networking.ServiceEntry_STATIC:
		res = model.ResolutionStatic
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		res = model.ResolutionDNS
	}
	var out []*model.Service
	for _, host := range se.Spec.Hosts {
		s := &model.Service{
			Hostname:     host,
			Name:         se.Name,
			Namespace:    se.Namespace,
			Addresses:    slices.Clone(se.Spec.Addresses),
			Ports:        slices.Clone(ports),
			MeshExternal: se.Spec.Location == networking.ServiceEntry_MESH_EXTERNAL,
			Resolution:   res,
			Labels:       maps.Clone(se.Labels),
		}
		m := newEndpointMerger()
		for _, ep := range se.Spec.Endpoints {
			m.add(workloadEndpoint(ep, se.Namespace, s.Ports))
		}
		if sel := se.Spec.WorkloadSelector; sel != nil {
			for _, we := range wi.selected(se.Namespace, sel.Labels) {
				m.add(workloadEndpoint(&we.Spec, we.Namespace, s.Ports))
			}
		}
		if res == model.ResolutionDNS && len(se.Spec.Endpoints) == 0 && se.Spec.WorkloadSelector == nil {
			m.add(model.Endpoint{Address: host, Ports: portNumbers(s.Ports), Namespace: se.Namespace, Healthy: true, Weight: 1})
		}
		s.Endpoints = m.list()
		out = append(out, s)
	}
	return out
}

// workloadIndex finds the WorkloadEntries a selector matches without scanning
// them all: entries are indexed by namespace and by each label pair.
type workloadIndex map[string]map[string][]*networkingv1.WorkloadEntry // ns -> "k=v" -> entries

func newWorkloadIndex(ws []*networkingv1.WorkloadEntry) workloadIndex {
	wi := workloadIndex{}
	for _, w := range ws {
		byLabel := wi[w.Namespace]
		if byLabel == nil {
			byLabel = map[string][]*networkingv1.WorkloadEntry{}
			wi[w.Namespace] = byLabel
		}
		for k, v := range w.Spec.Labels {
			byLabel[k+"="+v] = append(byLabel[k+"="+v], w)
		}
	}
	return wi
}

// selected returns the entries of namespace whose labels include all of
// selector (a Kubernetes equality selector), in their input order. An empty
// selector selects nothing, as for a Service without a selector.
func (wi workloadIndex) selected(namespace string, selector map[string]string) []*networkingv1.WorkloadEntry {
	var smallest []*networkingv1.WorkloadEntry
	first := true
	for k, v := range selector {
		c := wi[namespace][k+"="+v]
		if first || len(c) < len(smallest) {
			smallest, first = c, false
		}
	}
	if first {
		return nil
	}
	sel := labels.SelectorFromSet(selector)
	var out []*networkingv1.WorkloadEntry
	for _, w := range smallest {
		if sel.Matches(labels.Set(w.Spec.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// workloadEndpoint maps a WorkloadEntry onto a service's ports: the entry's
// port of the same name, else the service target port, else the service port.
func workloadEndpoint(w *networking.WorkloadEntry, namespace string, ports []model.Port) model.Endpoint {
	e := model.Endpoint{
		Address:        w.Address,
		Ports:          map[string]uint32{},
		Labels:         maps.Clone(w.Labels),
		Namespace:      namespace,
		ServiceAccount: w.ServiceAccount,
		Healthy:        true,
		Locality:       w.Locality,
		Weight:         max(w.Weight, 1),
	}
	for _, p := range ports {
		switch {
		case w.Ports[p.Name] != 0:
			e.Ports[p.Name] = w.Ports[p.Name]
		case p.TargetPort != 0:
			e.Ports[p.Name] = p.TargetPort
		default:
			e.Ports[p.Name] = p.Port
		}
	}
	return e
}

// endpointMerger dedupes endpoints by address: the same pod is commonly listed
// by both an Endpoints object and an EndpointSlice.
type endpointMerger struct {
	byAddr map[string]*model.Endpoint
}

func newEndpointMerger() *endpointMerger {
	return &endpointMerger{byAddr: map[string]*model.Endpoint{}}
}

func (m *endpointMerger) add(e model.Endpoint) {
	prev, ok := m.byAddr[e.Address]
	if !ok {
		m.byAddr[e.Address] = &e
		return
	}
	for k, v := range e.Ports {
		if _, set := prev.Ports[k]; !set {
			if prev.Ports == nil {
				prev.Ports = map[string]uint32{}
			}
			prev.Ports[k] = v
		}
	}
	for k, v := range e.Labels {
		if _, set := prev.Labels[k]; !set {
			if prev.Labels == nil {
				prev.Labels = map[string]string{}
			}
			prev.Labels[k] = v
		}
	}
	prev.Healthy = prev.Healthy || e.Healthy
	prev.ServiceAccount = cmp.Or(prev.ServiceAccount, e.ServiceAccount)
	prev.Locality = cmp.Or(prev.Locality, e.Locality)
}

func (m *endpointMerger) list() []model.Endpoint {
	out := make([]model.Endpoint, 0, len(m.byAddr))
	for _, e := range m.byAddr {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b model.Endpoint) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

func sortPorts(ps []model.Port) {
	slices.SortFunc(ps, func(a, b model.Port) int { return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Name, b.Name)) })
}

func portNumbers(ps []model.Port) map[string]uint32 {
	out := map[string]uint32{}
	for _, p := range ps {
		out[p.Name] = cmp.Or(p.TargetPort, p.Port)
	}
	return out
}

func zoneLocality(zone *string) string {
	if zone == nil || *zone == "" {
		return ""
	}
	return "/" + *zone // region unknown from the slice alone
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// version hashes everything the snapshot carries except sources, so moving an
// object between files or reformatting YAML does not re-push anything.
func version(set *Set, snap *model.Snapshot) string {
	h := sha256.New()
	writeJSON(h, snap.Services)
	for _, o := range set.Objects {
		h.Write(o.sum[:])
	}
	writeProto(h, snap.Mesh)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// objectSum hashes an object's identity and content once, when it is parsed;
// Loader reuses parsed objects, so a reload hashes only what changed.
func objectSum(o *Object) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(o.Kind + "\x00" + o.Namespace + "\x00" + o.Name + "\x00"))
	switch v := o.Value.(type) {
	case proto.Message: // MeshConfig
		writeProto(h, v)
	case *corev1.Service, *corev1.Endpoints, *discoveryv1.EndpointSlice:
		writeJSON(h, v)
	default:
		writeIstio(h, v)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func writeIstio(h hash.Hash, v any) {
	type meta interface {
		GetLabels() map[string]string
		GetAnnotations() map[string]string
	}
	if m, ok := v.(meta); ok {
		writeJSON(h, m.GetLabels())
		writeJSON(h, m.GetAnnotations())
	}
	switch o := v.(type) {
	case *networkingv1.ServiceEntry:
		writeProto(h, &o.Spec)
	case *networkingv1.WorkloadEntry:
		writeProto(h, &o.Spec)
	case *networkingv1.VirtualService:
		writeProto(h, &o.Spec)
	case *networkingv1.DestinationRule:
		writeProto(h, &o.Spec)
	case *networkingv1.Gateway:
		writeProto(h, &o.Spec)
	case *networkingv1.Sidecar:
		writeProto(h, &o.Spec)
	case *securityv1.PeerAuthentication:
		writeProto(h, &o.Spec)
	case *securityv1.AuthorizationPolicy:
		writeProto(h, &o.Spec)
	}
}

func writeJSON(h hash.Hash, v any) {
	b, _ := json.Marshal(v) // maps are sorted by encoding/json
	h.Write(b)
	h.Write([]byte{0})
}

func writeProto(h hash.Hash, m proto.Message) {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	h.Write(b)
	h.Write([]byte{0})
}
