package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// dr is a DestinationRule defining subsets v1 and v2 for reviews in ns default.
const dr = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

func loadString(t *testing.T, docs string) []string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "test.yaml"), []byte(docs), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load([]string{dir}, Options{})
	if err == nil {
		return nil
	}
	es, ok := err.(Errors)
	if !ok {
		t.Fatalf("Load returned %T, want Errors: %v", err, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, strings.ReplaceAll(e.Error(), dir+string(filepath.Separator), ""))
	}
	return out
}

// TestValidationRules has one case per rule: the exact message a user sees,
// with file, line, document, object, field path and problem.
func TestValidationRules(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "weights must sum to 100",
			yaml: dr + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 30
`,
			want: []string{`test.yaml:16: doc 1 VirtualService default/reviews: spec.http[0].route: route weights sum to 110; they must sum to 100`},
		},
		{
			name: "negative weight",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: 110
    - destination: {host: ratings}
      weight: -10
`,
			want: []string{
				`test.yaml:9: doc 0 VirtualService default/r: spec.http[0].route[0].weight: weight 110 is out of range; it must be between 0 and 100`,
				`test.yaml:11: doc 0 VirtualService default/r: spec.http[0].route[1].weight: weight -10 is out of range; it must be between 0 and 100`,
			},
		},
		{
			name: "malformed host",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts:
  - "reviews..default"
  - "foo.*.com"
  http:
  - route:
    - destination: {host: reviews}
`,
			want: []string{
				`test.yaml:6: doc 0 VirtualService default/r: spec.hosts[0]: invalid host "reviews..default": label "": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'); wildcards are only allowed in the first label`,
				`test.yaml:7: doc 0 VirtualService default/r: spec.hosts[1]: invalid host "foo.*.com": label "*": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'); wildcards are only allowed in the first label`,
			},
		},
		{
			name: "wildcard host bound to mesh",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts: ["*"]
  http:
  - route:
    - destination: {host: reviews}
`,
			want: []string{`test.yaml:5: doc 0 VirtualService default/r: spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway; list the hosts`},
		},
		{
			name: "subset missing from DestinationRule",
			yaml: dr + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v3}
`,
			want: []string{`test.yaml:17: doc 1 VirtualService default/reviews: spec.http[0].route[0].destination.subset: subset "v3" is not defined in DestinationRule default/reviews for host "reviews.default.svc.cluster.local" (defined: v1, v2)`},
		},
		{
			name: "subset without any DestinationRule",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  tcp:
  - route:
    - destination: {host: ratings, subset: v1}
`,
			want: []string{`test.yaml:8: doc 0 VirtualService default/ratings: spec.tcp[0].route[0].destination.subset: subset "v1" is used but no DestinationRule exists for host "ratings.default.svc.cluster.local"; add a DestinationRule that defines the subset`},
		},
		{
			name: "port out of range",
			yaml: `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports:
  - {number: 70000, name: https, protocol: HTTPS}
`,
			want: []string{`test.yaml:8: doc 0 ServiceEntry default/ext: spec.ports[0].number: port 70000 is out of range; it must be between 1 and 65535`},
		},
		{
			name: "service port out of range",
			yaml: `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports:
  - name: http
    port: 0
`,
			want: []string{`test.yaml:7: doc 0 Service default/web: spec.ports[0].port: port 0 is out of range; it must be between 1 and 65535`},
		},
		{
			name: "duration does not parse",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts: [reviews]
  http:
  - retries: {attempts: 3, perTryTimeout: 2 seconds}
    route:
    - destination: {host: reviews}
`,
			want: []string{`test.yaml:7: doc 0 VirtualService default/r: spec.http[0].retries.perTryTimeout: invalid duration "2 seconds"; use a number with a unit, such as 5s, 250ms or 1m30s`},
		},
		{
			name: "duration must be positive",
			yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {connectTimeout: 0s}
    outlierDetection:
      baseEjectionTime: -1s
`,
			want: []string{
				`test.yaml:8: doc 0 DestinationRule default/d: spec.trafficPolicy.connectionPool.tcp.connectTimeout: duration 0s must be at least 1ms`,
				`test.yaml:10: doc 0 DestinationRule default/d: spec.trafficPolicy.outlierDetection.baseEjectionTime: duration -1s must be at least 1ms`,
			},
		},
		{
			name: "fault percentage and delay",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts: [reviews]
  http:
  - fault:
      delay:
        percentage: {value: 150}
        fixedDelay: 0s
      abort:
        httpStatus: 99
    route:
    - destination: {host: reviews}
`,
			want: []string{
				`test.yaml:9: doc 0 VirtualService default/r: spec.http[0].fault.delay.percentage.value: percentage 150 is out of range; it must be between 0 and 100`,
				`test.yaml:10: doc 0 VirtualService default/r: spec.http[0].fault.delay.fixedDelay: duration 0s must be at least 1ms`,
				`test.yaml:12: doc 0 VirtualService default/r: spec.http[0].fault.abort.httpStatus: HTTP status 99 is out of range; it must be between 200 and 599`,
			},
		},
		{
			name: "regex must compile",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        x-user: {regex: "[a-z"}
    route:
    - destination: {host: reviews}
`,
			want: []string{`test.yaml:9: doc 0 VirtualService default/r: spec.http[0].match[0].headers[x-user].regex: invalid RE2 regex "[a-z": missing closing ]: ` + "`[a-z`"},
		},
		{
			name: "duplicate names per kind and namespace",
			yaml: dr + "---\n" + dr,
			want: []string{`test.yaml:12: doc 1 DestinationRule default/reviews: metadata.name: duplicate DestinationRule default/reviews; first defined at test.yaml:1 (doc 0)`},
		},
		{
			name: "load balancer policy value",
			yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBBIN}
`,
			want: []string{`test.yaml:7: doc 0 DestinationRule default/d: spec.trafficPolicy.loadBalancer.simple: unknown value "ROUND_ROBBIN"; allowed: UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST`},
		},
		{
			name: "consistent hash needs a key",
			yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {minimumRingSize: 1024}
`,
			want: []string{`test.yaml:8: doc 0 DestinationRule default/d: spec.trafficPolicy.loadBalancer.consistentHash: consistentHash needs a key: one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName`},
		},
		{
			name: "peer authentication mode",
			yaml: `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: demo}
spec:
  mtls: {mode: STRICTEST}
`,
			want: []string{`test.yaml:5: doc 0 PeerAuthentication demo/default: spec.mtls.mode: unknown value "STRICTEST"; allowed: UNSET, DISABLE, PERMISSIVE, STRICT`},
		},
		{
			name: "unknown field",
			yaml: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: w, namespace: default}
spec:
  address: 10.0.0.1
  serviceaccount: greeter
`,
			want: []string{`test.yaml:6: doc 0 WorkloadEntry default/w: spec.serviceaccount: unknown field; known fields: address, ports, labels, network, locality, weight, serviceAccount`},
		},
		{
			name: "unknown metadata field",
			yaml: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: w, namespace: default, lables: {a: b}}
spec: {address: 10.0.0.1}
`,
			want: []string{`test.yaml:3: doc 0 WorkloadEntry default/w: metadata.lables: unknown field; check the spelling and the apiVersion`},
		},
		{
			name: "unknown kind",
			yaml: "apiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: x}\n",
			want: []string{`test.yaml:2: doc 0: kind: unsupported kind "EnvoyFilter"; supported kinds: Service, Endpoints, EndpointSlice, ServiceEntry, WorkloadEntry, VirtualService, DestinationRule, Gateway, Sidecar, PeerAuthentication, AuthorizationPolicy, MeshConfig, ConfigMap`},
		},
		{
			name: "wrong apiVersion for kind",
			yaml: "apiVersion: security.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\n",
			want: []string{`test.yaml:2: doc 0: kind: kind VirtualService is not served by apiVersion "security.istio.io/v1"; use networking.istio.io/v1 or networking.istio.io/v1beta1 or networking.istio.io/v1alpha3`},
		},
		{
			name: "recursive alias",
			yaml: "apiVersion: v1\nkind: Service\nmetadata: &m {name: web, labels: *m}\n",
			want: []string{`test.yaml:1: doc 0: invalid document: line 3: alias *m refers to itself`},
		},
		{
			name: "invalid YAML",
			yaml: "apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n",
			want: []string{`test.yaml:3: doc 0: invalid YAML: line 3: did not find expected ',' or ']'; the rest of the file is skipped`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := loadString(t, tc.yaml)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAllErrorsReturnedAtOnce(t *testing.T) {
	got := loadString(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts: [reviews]
  http:
  - timeout: soon
    bogus: true
    route:
    - destination: {host: reviews, port: {number: 0}}
      weight: 50
`)
	if len(got) != 4 {
		t.Fatalf("want 4 errors (bad duration, unknown field, port, weights) in one run, got %d:\n%s", len(got), strings.Join(got, "\n"))
	}
}

func TestAcceptedAliasesAndDefaults(t *testing.T) {
	dir := t.TempDir()
	doc := `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - timeout: 0s
    route:
    - destination: {host: reviews}
`
	if err := os.WriteFile(filepath.Join(dir, "vs.yml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	// kubectl -o json output, tab-indented, in a subdirectory.
	js := "{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Service\",\n\t\"metadata\": {\"name\": \"reviews\"},\n\t\"spec\": {\"ports\": [{\"name\": \"http\", \"port\": 9080}]}\n}\n"
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "svc.json"), []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not config: other extensions and hidden files are skipped.
	for _, f := range []string{"README.md", ".vs.yml.swp", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("not: [yaml"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err := Load([]string{dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Objects) != 2 {
		t.Fatalf("got %d objects, want the Service and the VirtualService", len(set.Objects))
	}
	o := set.Objects[1]
	if o.Namespace != "default" || o.Kind != KindVirtualService {
		t.Errorf("got %s %s/%s, want VirtualService in namespace default", o.Kind, o.Namespace, o.Name)
	}
	if o.Value.(*networkingv1.VirtualService).APIVersion != "networking.istio.io/v1" {
		t.Errorf("apiVersion not normalised to v1")
	}
}

// TestBadExamples keeps testdata/bad-*.yaml failing with exactly the messages
// in the matching .errors golden file (go test -update rewrites them).
func TestBadExamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad-*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/bad-*.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load([]string{f}, Options{})
			if err == nil {
				t.Fatalf("%s is valid; bad examples must fail", f)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".errors"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("errors differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestExampleMeshIsValid(t *testing.T) {
	if _, err := Load([]string{"../../examples/mesh"}, Options{}); err != nil {
		t.Fatalf("examples/mesh must be valid:\n%v", err)
	}
}

func TestMeshConfigSources(t *testing.T) {
	cm := `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    trustDomain: example.org
    defaultConfig:
      discoveryAddress: istiod-lite:15012
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "istio.yaml"), []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := Load([]string{dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := Build(set).Mesh.GetTrustDomain(); got != "example.org" {
		t.Errorf("trust domain from the istio ConfigMap = %q", got)
	}
	if got := Build(set).Mesh.GetRootNamespace(); got != "istio-system" {
		t.Errorf("defaults kept for unset fields: root namespace %q", got)
	}

	got := loadString(t, cm+`---
apiVersion: meshlite.io/v1alpha1
kind: MeshConfig
spec: {trustDomain: other.org, connectTimeout: 1 sec}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-settings, namespace: default}
data: {a: b}
`)
	want := []string{
		`test.yaml:10: doc 1 MeshConfig: only one MeshConfig is allowed; another is at test.yaml:1 (doc 0)`,
		`test.yaml:12: doc 1 MeshConfig: spec.connectTimeout: invalid duration "1 sec"; use a number with a unit, such as 5s, 250ms or 1m30s`,
		`test.yaml:16: doc 2 ConfigMap default/app-settings: metadata.name: only Istio's mesh ConfigMap (named istio or istio-<revision>, with key mesh) is read; remove other ConfigMaps from the config directory`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestKubectlListIsRead(t *testing.T) {
	got := loadString(t, `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
  spec: {ports: [{name: http, port: 80}]}
- apiVersion: v1
  kind: Service
  metadata: {name: a}
  spec: {ports: [{name: http, port: 80}]}
`)
	want := []string{`test.yaml:10: doc 0 Service default/a: metadata.name: duplicate Service default/a; first defined at test.yaml:4 (doc 0)`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestSubsetFromWildcardDestinationRule(t *testing.T) {
	got := loadString(t, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all, namespace: default}
spec:
  host: "*.default.svc.cluster.local"
  subsets: [{name: canary, labels: {track: canary}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: canary}
      weight: 50
    - destination: {host: ratings, subset: stable}
      weight: 50
`)
	want := []string{`test.yaml:17: doc 1 VirtualService default/r: spec.http[0].route[1].destination.subset: subset "stable" is not defined in DestinationRule default/all for host "ratings.default.svc.cluster.local" (defined: canary)`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// The Loader re-parses only changed files, and still re-checks cross-object
// rules against the whole set.
func TestLoaderReparsesOnlyChangedFiles(t *testing.T) {
	dir := t.TempDir()
	drFile, vsFile := filepath.Join(dir, "dr.yaml"), filepath.Join(dir, "vs.yaml")
	vs := func(subset string) string {
		return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: " + subset + "}\n"
	}
	for f, body := range map[string]string{drFile: dr, vsFile: vs("v1")} {
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := NewLoader(Options{})
	first, err := l.Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vsFile, []byte(vs("v3")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Load([]string{dir}); err == nil || !strings.Contains(err.Error(), `subset "v3" is not defined`) {
		t.Fatalf("edited file not re-parsed or not cross-checked: %v", err)
	}
	if err := os.WriteFile(vsFile, []byte(vs("v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := l.Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	find := func(s *Set, kind string) *Object {
		for _, o := range s.Objects {
			if o.Kind == kind {
				return o
			}
		}
		return nil
	}
	if find(first, KindDestinationRule) != find(second, KindDestinationRule) {
		t.Error("unchanged file was parsed again")
	}
	if find(first, KindVirtualService) == find(second, KindVirtualService) {
		t.Error("changed file was not parsed again")
	}
	if Build(first).Version == Build(second).Version {
		t.Error("version unchanged after an edit")
	}
}
