package config

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	sigsyaml "sigs.k8s.io/yaml"
)

// LoadMeshConfigFile reads pilot-discovery's --meshConfig: MeshConfig YAML, as
// the `mesh` key of Istio's istio ConfigMap holds it. A missing file is
// (nil, nil) when optional, so the default path may be absent.
func LoadMeshConfigFile(path string, optional bool) (*meshv1alpha1.MeshConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && optional {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mesh config --meshConfig %s: %w", path, err)
	}
	js, err := sigsyaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("mesh config %s: invalid YAML: %w", path, err)
	}
	m := &meshv1alpha1.MeshConfig{}
	if err := protojson.Unmarshal(js, m); err != nil {
		return nil, fmt.Errorf("mesh config %s: not a MeshConfig (fix or remove the field named): %w", path, err)
	}
	return m, nil
}
