package config

import (
	"bytes"
	"encoding/json"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// decodeMeshConfigMap reads Istio's own mesh ConfigMap (`istio`, or
// `istio-<revision>`, key `mesh`), so an Istio install's config directory
// works unchanged. Other ConfigMaps are not configuration and are refused, so
// that a misplaced file is noticed.
func decodeMeshConfigMap(r *reporter, raw []byte, opts Options) any {
	var cm corev1.ConfigMap
	if !strictDecode(r, raw, &cm) {
		return nil
	}
	setIdentity(r, &cm.ObjectMeta, opts, false, false)
	if cm.Name != "istio" && !strings.HasPrefix(cm.Name, "istio-") {
		r.errorf(root("metadata").field("name"), "only Istio's mesh ConfigMap (named istio or istio-<revision>, with key mesh) is read; remove other ConfigMaps from the config directory")
		return nil
	}
	text, ok := cm.Data["mesh"]
	if !ok {
		r.errorf(root("data"), "key mesh is required: it holds the MeshConfig YAML")
		return nil
	}
	p := root("data").key("mesh")
	js, err := sigsyaml.YAMLToJSONStrict([]byte(text))
	if err != nil {
		r.errorf(p, "invalid MeshConfig YAML: %v", err)
		return nil
	}
	// Fields inside the embedded YAML have no line of their own in the file;
	// errors point at the mesh key.
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		r.errorf(p, "invalid MeshConfig: %v", err)
		return nil
	}
	m := &meshv1alpha1.MeshConfig{}
	if !decodeProto(r, p, v, m) {
		return nil
	}
	validateMesh(r, p, m)
	return m
}
