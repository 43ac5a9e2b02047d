package meshrun

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// rewriteAddresses points each workload's WorkloadEntry in the copied config
// at the address the workload really has (another loopback address, or its
// network namespace's), so that the endpoints istiod-lite serves match.
func (m *Mesh) rewriteAddresses() error {
	files, err := filepath.Glob(filepath.Join(m.ConfigDir(), "*.yaml"))
	if err != nil {
		return err
	}
	docs := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		docs[f] = string(b)
	}
	for _, w := range m.o.Workloads {
		if w.MeshIP == "" || w.MeshIP == w.IP {
			continue
		}
		from, to := "address: "+w.MeshIP+"\n", "address: "+w.IP+"\n"
		found := false
		for f, d := range docs {
			if strings.Contains(d, from) {
				docs[f] = strings.ReplaceAll(d, from, to)
				found = true
			}
		}
		if !found {
			return fmt.Errorf("workload %s: no WorkloadEntry with %q in %s; set Workload.MeshIP to the address the config uses",
				w.Name, strings.TrimSpace(from), m.o.MeshDir)
		}
	}
	for f, d := range docs {
		if err := os.WriteFile(f, []byte(d), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// VirtualServicePath is the file the traffic split lives in.
func (m *Mesh) VirtualServicePath() string {
	return filepath.Join(m.ConfigDir(), "greeter-virtualservice.yaml")
}

// VirtualService is the greeter VirtualService splitting traffic v1/v2 by weight.
func VirtualService(v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: greeter
  namespace: %s
spec:
  hosts:
  - %s
  http:
  - route:
    - destination:
        host: %[2]s
        subset: v1
      weight: %[3]d
    - destination:
        host: %[2]s
        subset: v2
      weight: %[4]d
`, Namespace, ServiceHost, v1, v2)
}

// WriteVirtualService sets the v1/v2 weights.
func (m *Mesh) WriteVirtualService(v1, v2 int) error {
	return m.WriteConfig(filepath.Base(m.VirtualServicePath()), VirtualService(v1, v2))
}

// WriteConfig replaces (or adds) one file of the served config. It writes then
// renames, as an editor does, so istiod-lite never reads half a file.
func (m *Mesh) WriteConfig(name, content string) error {
	path := filepath.Join(m.ConfigDir(), name)
	tmp := filepath.Join(m.ConfigDir(), "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
