package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Istio's per-namespace ConfigMap with the mesh's root certificates, which
// injected pods mount at /var/run/secrets/istio to verify istiod.
const (
	RootCertConfigMap = "istio-ca-root-cert"
	RootCertKey       = "root-cert.pem"
)

// PublishRootCert keeps istio-ca-root-cert in every namespace of the mesh
// (discoverySelectors apply) equal to bundle(), as istiod's namespace
// controller does: as soon as the namespaces are known, when a namespace is
// added, every interval, and each time changed fires (the CA's Changed
// channel, on rotation). It returns when ctx ends.
func (r *Registry) PublishRootCert(ctx context.Context, bundle func() []byte, changed func() <-chan struct{}, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	for {
		if err := r.publishRootCert(ctx, bundle()); err != nil {
			r.log.Warn("cannot publish the root certificate ConfigMaps; injected pods cannot start without them", "configMap", RootCertConfigMap, "error", err)
		}
		var ch <-chan struct{}
		if changed != nil {
			ch = changed()
		}
		wait := interval
		if !r.synced.Load() {
			wait = min(interval, 200*time.Millisecond) // publish as soon as the namespaces are known
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-r.namespaceAdded:
		case <-r.opts.Clock.After(wait):
		}
	}
}

func (r *Registry) publishRootCert(ctx context.Context, pem []byte) error {
	if !r.synced.Load() {
		return nil // namespaces not known yet; the next round publishes
	}
	mesh := r.Mesh()
	filter, _ := newNamespaceFilter(mesh)
	nss, err := r.listers.namespaces.List(labels.Everything())
	if err != nil {
		return err
	}
	cms := r.opts.Client.ConfigMaps
	var firstErr error
	for _, ns := range nss {
		if ns.Status.Phase == corev1.NamespaceTerminating || (ns.Name != mesh.GetRootNamespace() && !filter.matches(ns.Labels, true)) {
			continue
		}
		want := string(pem)
		cm, err := cms(ns.Name).Get(ctx, RootCertConfigMap, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cms(ns.Name).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: RootCertConfigMap, Labels: map[string]string{"istio.io/config": "true"}},
				Data:       map[string]string{RootCertKey: want},
			}, metav1.CreateOptions{})
		case err == nil && cm.Data[RootCertKey] != want:
			cm = cm.DeepCopy()
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[RootCertKey] = want
			_, err = cms(ns.Name).Update(ctx, cm, metav1.UpdateOptions{})
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("namespace %s: %w", ns.Name, err)
		}
	}
	return firstErr
}
