// Package kube is istiod-lite's Kubernetes registry: client-go shared
// informers over Services, EndpointSlices, Pods and Namespaces, and the Istio
// config kinds (istio.io/client-go types), read through kubeclient. Every
// change rebuilds the same model.Snapshot the file registry builds, through
// istiod-lite/config, so both registries validate and translate config
// identically.
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
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	networkinglisters "istio.io/client-go/pkg/listers/networking/v1"
	securitylisters "istio.io/client-go/pkg/listers/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
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
	// Client reads core, discovery and Istio objects. Required. Istio kinds
	// whose CRD is not installed (or whose client is nil) are skipped with a
	// warning.
	Client *kubeclient.Clients
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

	listers   listers
	informers []cache.SharedIndexInformer

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
	c := opts.Client
	services := r.informer(kubeclient.NewInformer(c.Services(""), &corev1.Service{}, opts.Resync, nil))
	slices := r.informer(kubeclient.NewInformer(c.EndpointSlices(""), &discoveryv1.EndpointSlice{}, opts.Resync, nil))
	pods := r.informer(kubeclient.NewInformer(c.Pods(""), &corev1.Pod{}, opts.Resync, nil))
	nsInformer := r.informer(kubeclient.NewInformer(c.Namespaces(), &corev1.Namespace{}, opts.Resync, nil))
	r.listers.services = corelisters.NewServiceLister(services.GetIndexer())
	r.listers.slices = discoverylisters.NewEndpointSliceLister(slices.GetIndexer())
	r.listers.pods = corelisters.NewPodLister(pods.GetIndexer())
	r.listers.namespaces = corelisters.NewNamespaceLister(nsInformer.GetIndexer())
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

// informer registers inf: its events mark the snapshot dirty, its watch
// errors mark the registry not ready, and Run starts it.
func (r *Registry) informer(inf cache.SharedIndexInformer) cache.SharedIndexInformer {
	// Server-side-apply bookkeeping is often the largest part of an object
	// and nothing here reads it. Set before the informer starts, as required.
	_ = inf.SetTransform(stripManagedFields)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.markDirty() },
		UpdateFunc: func(any, any) { r.markDirty() },
		DeleteFunc: func(any) { r.markDirty() },
	})
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, rf *cache.Reflector, err error) {
		r.onWatchError(rf.TypeDescription(), err)
	})
	r.informers = append(r.informers, inf)
	return inf
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

// istioKind is one Istio config kind the registry can watch.
type istioKind struct {
	gv, resource string
	start        func() // nil when the client does not have the kind
}

// watchKind describes an Istio kind: start creates its informer and gives its
// indexer to setLister.
func watchKind[T, L runtime.Object](r *Registry, gv schema.GroupVersion, resource string,
	client func(ns string) kubeclient.Reader[T, L], example T, setLister func(cache.Indexer)) istioKind {
	k := istioKind{gv: gv.String(), resource: resource}
	if client != nil {
		k.start = func() {
			setLister(r.informer(kubeclient.NewInformer(client(""), example, r.opts.Resync, nil)).GetIndexer())
		}
	}
	return k
}

// istioKinds starts informers for the Istio kinds whose CRDs are installed.
func (r *Registry) istioKinds(ctx context.Context) {
	c, l := r.opts.Client, &r.listers
	net, sec := networkingv1.SchemeGroupVersion, securityv1.SchemeGroupVersion
	kinds := []istioKind{
		watchKind(r, net, "virtualservices", c.VirtualServices, &networkingv1.VirtualService{},
			func(i cache.Indexer) { l.vs = networkinglisters.NewVirtualServiceLister(i) }),
		watchKind(r, net, "destinationrules", c.DestinationRules, &networkingv1.DestinationRule{},
			func(i cache.Indexer) { l.dr = networkinglisters.NewDestinationRuleLister(i) }),
		watchKind(r, net, "gateways", c.Gateways, &networkingv1.Gateway{},
			func(i cache.Indexer) { l.gw = networkinglisters.NewGatewayLister(i) }),
		watchKind(r, net, "sidecars", c.Sidecars, &networkingv1.Sidecar{},
			func(i cache.Indexer) { l.sc = networkinglisters.NewSidecarLister(i) }),
		watchKind(r, net, "serviceentries", c.ServiceEntries, &networkingv1.ServiceEntry{},
			func(i cache.Indexer) { l.se = networkinglisters.NewServiceEntryLister(i) }),
		watchKind(r, net, "workloadentries", c.WorkloadEntries, &networkingv1.WorkloadEntry{},
			func(i cache.Indexer) { l.we = networkinglisters.NewWorkloadEntryLister(i) }),
		watchKind(r, sec, "peerauthentications", c.PeerAuthentications, &securityv1.PeerAuthentication{},
			func(i cache.Indexer) { l.pa = securitylisters.NewPeerAuthenticationLister(i) }),
		watchKind(r, sec, "authorizationpolicies", c.AuthorizationPolicies, &securityv1.AuthorizationPolicy{},
			func(i cache.Indexer) { l.ap = securitylisters.NewAuthorizationPolicyLister(i) }),
	}
	served := map[string]map[string]bool{}
	for _, k := range kinds {
		if k.start == nil {
			continue
		}
		if served[k.gv] == nil {
			served[k.gv], _ = c.ServedResources(ctx, k.gv) // an error reads as "not installed"
			if served[k.gv] == nil {
				served[k.gv] = map[string]bool{}
			}
		}
		if !served[k.gv][k.resource] {
			r.log.Warn("Istio CRD not installed; this kind is not watched (apply deploy/kubernetes/crds)", "resource", k.resource+"."+k.gv)
			continue
		}
		k.start()
	}
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
	r.istioKinds(ctx)
	// The informers stop with ctx; wait for them so nothing outlives Run.
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, inf := range r.informers {
		wg.Go(func() { inf.RunWithContext(ctx) })
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
		err := r.opts.Client.ServerVersion(ctx)
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

// stripManagedFields drops server-side-apply bookkeeping from cached objects.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
