package kube

import (
	"fmt"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// namespaceFilter applies the mesh config's discoverySelectors: a namespace is
// in the mesh when its labels match any selector, and every namespace is when
// there are none, as in Istio.
type namespaceFilter struct {
	selectors []labels.Selector
}

func newNamespaceFilter(mesh *meshv1alpha1.MeshConfig) (namespaceFilter, error) {
	var f namespaceFilter
	for i, s := range mesh.GetDiscoverySelectors() {
		ls := &metav1.LabelSelector{MatchLabels: s.GetMatchLabels()}
		for _, e := range s.GetMatchExpressions() {
			ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{
				Key: e.GetKey(), Operator: metav1.LabelSelectorOperator(e.GetOperator()), Values: e.GetValues(),
			})
		}
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return f, fmt.Errorf("mesh config discoverySelectors[%d]: %w; operators are In, NotIn, Exists and DoesNotExist", i, err)
		}
		f.selectors = append(f.selectors, sel)
	}
	return f, nil
}

// matches reports whether a namespace with these labels is selected. An
// unknown namespace (not yet seen by the informer) is selected only when
// there are no selectors.
func (f namespaceFilter) matches(nsLabels map[string]string, known bool) bool {
	if len(f.selectors) == 0 {
		return true
	}
	if !known {
		return false
	}
	for _, s := range f.selectors {
		if s.Matches(labels.Set(nsLabels)) {
			return true
		}
	}
	return false
}
