package kube

import (
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
)

// Istio's mesh ConfigMap: key "mesh" of ConfigMap "istio" in the system namespace.
const (
	DefaultMeshConfigMap   = "istio"
	DefaultSystemNamespace = "istio-system"
)

// watchMeshConfigMap adds an informer over the one mesh ConfigMap, so that
// editing it (discoverySelectors, trust domain, ...) takes effect without a
// restart, as in Istio.
func (r *Registry) watchMeshConfigMap() {
	inf := r.informer(kubeclient.NewInformer(r.opts.Client.ConfigMaps(r.opts.SystemNamespace), &corev1.ConfigMap{}, r.opts.Resync,
		func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + r.opts.MeshConfigMap }))
	r.listers.meshCM = corelisters.NewConfigMapLister(inf.GetIndexer())
}

// effectiveMesh is Options.Mesh overridden by the mesh ConfigMap. An invalid
// ConfigMap is logged and the last valid one keeps applying, so a typo in it
// does not change the mesh. Its parse is cached in parsed like other objects.
func (r *Registry) effectiveMesh(parsed map[string]parsedObject) *meshv1alpha1.MeshConfig {
	mesh := proto.Clone(r.opts.Mesh).(*meshv1alpha1.MeshConfig)
	if r.listers.meshCM == nil {
		return mesh
	}
	cm, err := r.listers.meshCM.ConfigMaps(r.opts.SystemNamespace).Get(r.opts.MeshConfigMap)
	if err != nil {
		r.meshCMGood = nil // deleted (or never created): the options apply
		return mesh
	}
	key := "ConfigMap/" + cm.Namespace + "/" + cm.Name
	p, hit := r.parsed[key]
	fresh := !hit || p.rv != cm.ResourceVersion || cm.ResourceVersion == ""
	if fresh {
		p = parsedObject{rv: cm.ResourceVersion, objs: r.parse("v1", config.KindConfigMap, cm)}
	}
	parsed[key] = p
	var m *meshv1alpha1.MeshConfig
	for _, o := range p.objs {
		if v, ok := o.Value.(*meshv1alpha1.MeshConfig); ok {
			m = v
		}
	}
	if m != nil {
		if _, err := newNamespaceFilter(m); err != nil {
			if fresh {
				r.log.Warn("invalid mesh ConfigMap ignored; the last valid mesh config stays in effect", "configMap", key, "error", err)
			}
			m = nil
		}
	}
	if m == nil {
		m = r.meshCMGood
	}
	if m == nil {
		return mesh
	}
	r.meshCMGood = m
	selectors := m.GetDiscoverySelectors()
	proto.Merge(mesh, m)
	if len(selectors) > 0 {
		mesh.DiscoverySelectors = selectors // replaced, not appended to the options'
	}
	return mesh
}

// Mesh is the mesh config in effect: Options.Mesh overridden by the mesh
// ConfigMap. Nil before the caches synced.
func (r *Registry) Mesh() *meshv1alpha1.MeshConfig {
	if s := r.Current(); s != nil {
		return s.Mesh
	}
	return nil
}
