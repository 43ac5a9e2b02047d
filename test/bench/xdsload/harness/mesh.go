package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Greeter is the service whose VirtualService the load programs edit.
const (
	GreeterHost = "greeter.demo.svc.cluster.local"
	GreeterPort = 7070
)

// WriteMesh writes greeter (two versions, subsets) and n more services with
// two endpoints each into dir/mesh.yaml.
func WriteMesh(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 7070, targetPort: 7070}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-v1, namespace: demo}
spec: {address: 10.200.0.1, labels: {app: greeter, version: v1}, serviceAccount: greeter}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-v2, namespace: demo}
spec: {address: 10.200.0.2, labels: {app: greeter, version: v2}, serviceAccount: greeter}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: svc-%[1]d, namespace: demo}
spec:
  selector: {app: svc-%[1]d}
  ports: [{name: grpc, port: 8080, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-%[1]d-a, namespace: demo}
spec: {address: 10.201.%[1]d.1, labels: {app: svc-%[1]d}, serviceAccount: svc-%[1]d}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-%[1]d-b, namespace: demo}
spec: {address: 10.201.%[1]d.2, labels: {app: svc-%[1]d}, serviceAccount: svc-%[1]d}
`, i)
	}
	return os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(b.String()), 0o644)
}

// WriteVS replaces the greeter VirtualService file the way an editor does
// (write a temporary file, rename it over the old one); edit e shifts the
// v1/v2 weights by 10 points per edit, so consecutive edits always differ.
func WriteVS(dir string, e int) error {
	w := 100 - (e%10)*10
	vs := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  http:
  - route:
    - destination: {host: greeter.demo.svc.cluster.local, subset: v1}
      weight: %d
    - destination: {host: greeter.demo.svc.cluster.local, subset: v2}
      weight: %d
`, w, 100-w)
	tmp := filepath.Join(dir, ".greeter-vs.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(vs), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "greeter-vs.yaml"))
}
