// Package kube is istiod-lite's Kubernetes registry: client-go shared
// informers over Services, EndpointSlices, Pods and Namespaces, and the Istio
// config kinds through istio.io/client-go informers. Every change rebuilds the
// same model.Snapshot the file registry builds, through istiod-lite/config, so
// both registries validate and translate config identically.
//
// Losing the API server never empties the mesh: informer caches keep their
// last contents, the snapshot keeps serving, and Ready reports false until the
// server answers again.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/model"
)

// Defaults of Options.
const (
	DefaultResync        = 60 * time.Second // Istio's --resync default
	DefaultDebounce      = 100 * time.Millisecond
	DefaultProbeInterval = 2 * time.Second
)

// Options configure a Registry.
type Options struct {
	// Client reads core and discovery objects. Required.
	Client kubernetes.Interface
	// Istio reads the Istio config kinds; nil watches none of them. Kinds whose
	// CRD is not installed are skipped with a warning.
	Istio istioclient.Interface
	// Mesh is the mesh config: discoverySelectors choose the namespaces
	// watched, rootNamespace is always included. It is served in snapshots.
	Mesh *meshv1alpha1.MeshConfig
	// SystemNamespace holds the mesh ConfigMap. Default DefaultSystemNamespace.
	SystemNamespace string
	// MeshConfigMap is the ConfigMap whose "mesh" key overrides Mesh, watched
	// live. Default DefaultMeshConfigMap; "-" disables it.
	MeshConfigMap string
	// Config tunes translation (domain suffix).
	Config config.Options
	// Resync is the informers' full resync period. Default DefaultResync.
	Resync time.Duration
	// Debounce coalesces bursts of events into one rebuild. Default DefaultDebounce.
	Debounce time.Duration
	// ProbeInterval is how often a lost API server is probed. Default DefaultProbeInterval.
	ProbeInterval time.Duration
	Clock         clock.Clock
	Logger        *slog.Logger
}

// Registry implements model.Registry over a Kubernetes API server.
type Registry struct {
	opts Options
	log  *slog.Logger

	kubeFactory  kubeinformers.SharedInformerFactory
	meshFactory  kubeinformers.SharedInformerFactory
	istioFactory istioinformers.SharedInformerFactory
	listers      listers
	informers    []cache.SharedIndexInformer

	dirty          chan struct{}
	changes        chan struct{}
	namespaceAdded chan struct{} // coalescing: wakes PublishRootCert
	synced         atomic.Bool
	lost           atomic.Bool
	lostErr        atomic.Value // string: the latest watch error, for logs and status

	mu         sync.RWMutex
	current    *model.Snapshot
	parsed     map[string]parsedObject  // only used by the rebuild goroutine
	meshCMGood *meshv1alpha1.MeshConfig // last valid mesh ConfigMap; rebuild goroutine only
}

var _ model.Registry = (*Registry)(nil)

// New prepares the informers. Call Run to start them.
func New(opts Options) (*Registry, error) {
	if opts.Client == nil {
		return nil, errors.New("kube registry: no Kubernetes client; pass --kubeconfig or run in a pod with a service account")
	}
	if opts.Resync < 0 {
		return nil, fmt.Errorf("kube registry: --resync %s is negative; use 0 to disable or a positive duration such as 60s", opts.Resync)
	}
	if opts.Resync == 0 {
		opts.Resync = DefaultResync
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Mesh == nil {
		opts.Mesh = config.DefaultMeshConfig()
	}
	if opts.SystemNamespace == "" {
		opts.SystemNamespace = DefaultSystemNamespace
	}
	if opts.MeshConfigMap == "" {
		opts.MeshConfigMap = DefaultMeshConfigMap
	}
	if _, err := newNamespaceFilter(opts.Mesh); err != nil {
		return nil, err
	}
	r := &Registry{
		opts:           opts,
		log:            opts.Logger.With("scope", "kube"),
		dirty:          make(chan struct{}, 1),
		changes:        make(chan struct{}, 1),
		namespaceAdded: make(chan struct{}, 1),
		parsed:         map[string]parsedObject{},
	}
	r.kubeFactory = kubeinformers.NewSharedInformerFactoryWithOptions(opts.Client, opts.Resync,
		kubeinformers.WithTransform(stripManagedFields))
	r.listers.services = r.kubeFactory.Core().V1().Services().Lister()
	r.listers.slices = r.kubeFactory.Discovery().V1().EndpointSlices().Lister()
	r.listers.pods = r.kubeFactory.Core().V1().Pods().Lister()
	r.listers.namespaces = r.kubeFactory.Core().V1().Namespaces().Lister()
	r.add(r.kubeFactory.Core().V1().Services().Informer())
	r.add(r.kubeFactory.Discovery().V1().EndpointSlices().Informer())
	r.add(r.kubeFactory.Core().V1().Pods().Informer())
	nsInformer := r.kubeFactory.Core().V1().Namespaces().Informer()
	r.add(nsInformer)
	// A new namespace needs istio-ca-root-cert before its first pod starts.
	_, _ = nsInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) {
			select {
			case r.namespaceAdded <- struct{}{}:
			default:
			}
		},
	})
	if opts.MeshConfigMap != "-" {
		r.watchMeshConfigMap()
	}
	return r, nil
}

func (r *Registry) add(inf cache.SharedIndexInformer) {
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.markDirty() },
		UpdateFunc: func(any, any) { r.markDirty() },
		DeleteFunc: func(any) { r.markDirty() },
	})
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, rf *cache.Reflector, err error) {
		r.onWatchError(rf.TypeDescription(), err)
	})
	r.informers = append(r.informers, inf)
}

// onWatchError marks the registry not ready on a failure that is not part of
// normal watching. The informer caches, and so the snapshot, stay as they were.
func (r *Registry) onWatchError(what string, err error) {
	if benignWatchError(err) {
		return // an expired watch or resource version: the reflector relists
	}
	if !r.lost.Swap(true) {
		r.log.Warn("lost the Kubernetes API server; serving the last known state and reporting not ready until it answers again",
			"reflector", what, "error", err)
	}
	r.lostErr.Store(err.Error())
}

// istioKinds starts informers for the Istio kinds whose CRDs are installed.
func (r *Registry) istioKinds() {
	if r.opts.Istio == nil {
		return
	}
	r.istioFactory = istioinformers.NewSharedInformerFactoryWithOptions(r.opts.Istio, r.opts.Resync,
		istioinformers.WithTransform(stripManagedFields))
	net := r.istioFactory.Networking().V1()
	sec := r.istioFactory.Security().V1()
	kinds := []struct {
		gvr   schema.GroupVersionResource
		setup func()
	}{
		{gvr("networking.istio.io", "virtualservices"), func() { r.listers.vs = net.VirtualServices().Lister(); r.add(net.VirtualServices().Informer()) }},
		{gvr("networking.istio.io", "destinationrules"), func() { r.listers.dr = net.DestinationRules().Lister(); r.add(net.DestinationRules().Informer()) }},
		{gvr("networking.istio.io", "gateways"), func() { r.listers.gw = net.Gateways().Lister(); r.add(net.Gateways().Informer()) }},
		{gvr("networking.istio.io", "sidecars"), func() { r.listers.sc = net.Sidecars().Lister(); r.add(net.Sidecars().Informer()) }},
		{gvr("networking.istio.io", "serviceentries"), func() { r.listers.se = net.ServiceEntries().Lister(); r.add(net.ServiceEntries().Informer()) }},
		{gvr("networking.istio.io", "workloadentries"), func() { r.listers.we = net.WorkloadEntries().Lister(); r.add(net.WorkloadEntries().Informer()) }},
		{gvr("security.istio.io", "peerauthentications"), func() { r.listers.pa = sec.PeerAuthentications().Lister(); r.add(sec.PeerAuthentications().Informer()) }},
		{gvr("security.istio.io", "authorizationpolicies"), func() {
			r.listers.ap = sec.AuthorizationPolicies().Lister()
			r.add(sec.AuthorizationPolicies().Informer())
		}},
	}
	served := map[string]map[string]bool{}
	for _, k := range kinds {
		gv := k.gvr.GroupVersion().String()
		if served[gv] == nil {
			served[gv] = map[string]bool{}
			list, err := r.opts.Istio.Discovery().ServerResourcesForGroupVersion(gv)
			if err == nil {
				for _, res := range list.APIResources {
					served[gv][res.Name] = true
				}
			}
		}
		if !served[gv][k.gvr.Resource] {
			r.log.Warn("Istio CRD not installed; this kind is not watched (apply deploy/kubernetes/crds)", "resource", k.gvr.String())
			continue
		}
		k.setup()
	}
}

func gvr(group, resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: "v1", Resource: resource}
}

// Current returns the last good snapshot, or nil before the caches synced.
func (r *Registry) Current() *model.Snapshot {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.current
}

// Changes is signalled (coalescing) each time Current changes.
func (r *Registry) Changes() <-chan struct{} { return r.changes }

// Ready is true once every informer synced and while the API server answers.
func (r *Registry) Ready() bool { return r.synced.Load() && !r.lost.Load() }

// LastWatchError is the failure that made the registry not ready, for
// status pages; empty while ready.
func (r *Registry) LastWatchError() string {
	if !r.lost.Load() {
		return ""
	}
	s, _ := r.lostErr.Load().(string)
	return s
}

// PodLister reads the watched pods, e.g. to refuse tokens bound to deleted pods.
func (r *Registry) PodLister() corelisters.PodLister { return r.listers.pods }

// Run starts the informers, waits for them to sync, publishes the first
// snapshot, and rebuilds on every change until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	r.istioKinds()
	r.kubeFactory.Start(ctx.Done())
	if r.meshFactory != nil {
		r.meshFactory.Start(ctx.Done())
		defer r.meshFactory.Shutdown()
	}
	if r.istioFactory != nil {
		r.istioFactory.Start(ctx.Done())
	}
	defer r.kubeFactory.Shutdown()
	if r.istioFactory != nil {
		defer r.istioFactory.Shutdown()
	}
	go r.probe(ctx)
	syncs := make([]cache.InformerSynced, 0, len(r.informers))
	for _, inf := range r.informers {
		syncs = append(syncs, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("kube registry: informer caches did not sync")
	}
	r.rebuild()
	r.synced.Store(true)
	r.log.Info("Kubernetes caches synced", "version", r.Current().Version, "services", len(r.Current().Services))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.dirty:
		}
		// Coalesce the burst that usually follows one change (a Deployment
		// scaling touches pods and slices many times).
		select {
		case <-ctx.Done():
			return nil
		case <-r.opts.Clock.After(r.opts.Debounce):
		}
		select {
		case <-r.dirty:
		default:
		}
		r.rebuild()
	}
}

func (r *Registry) markDirty() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// rebuild publishes a new snapshot when its content changed.
func (r *Registry) rebuild() {
	snap := r.build()
	r.mu.Lock()
	same := r.current != nil && r.current.Version == snap.Version
	if !same {
		r.current = snap
	}
	r.mu.Unlock()
	if same {
		return
	}
	r.log.Debug("snapshot rebuilt", "version", snap.Version, "services", len(snap.Services))
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

// probe checks the API server every ProbeInterval. client-go's reflectors
// retry a refused or dropped watch internally without reporting it, so the
// informers alone cannot tell that the server is gone. A failure marks the
// registry not ready; the next success clears that (and any watch error),
// and the reflectors' relist brings what changed meanwhile.
func (r *Registry) probe(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.opts.Clock.After(r.opts.ProbeInterval):
		}
		_, err := r.opts.Client.Discovery().ServerVersion()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.onWatchError("API server probe", err)
			continue
		}
		if r.lost.Swap(false) {
			r.log.Info("Kubernetes API server reachable again")
			r.markDirty()
		}
	}
}

// stripManagedFields drops server-side-apply bookkeeping from cached objects:
// it is often the largest part of an object and nothing here reads it.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
