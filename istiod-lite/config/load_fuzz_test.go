package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/model"
	"github.com/meshlite/meshlite/istiod-lite/xds"
)

// FuzzLoadBuildGenerate checks the whole path a config edit takes in
// istiod-lite, beyond "no panic":
//   - a rejected file yields Errors only, each located in the file and with a
//     message, and naming its field path when it has one;
//   - an accepted file renders back to YAML that is accepted again and renders
//     identically (parse → render → parse is a fixpoint), so what
//     /debug/configz shows can be fed back in;
//   - an accepted file builds a snapshot deterministically, and every xDS
//     resource generated from it for a sidecar and a proxyless gRPC client
//     passes Envoy's proto validation (a validated config never produces a
//     NACK-able push).
//
// Seeds: testdata/fuzz/FuzzLoadBuildGenerate plus the bundled examples and the
// package's bad-*.yaml files.
func FuzzLoadBuildGenerate(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	examples, _ := filepath.Glob("../../examples/mesh/*.yaml")
	var all [][]byte
	for _, p := range append(files, examples...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
			all = append(all, b)
		}
	}
	// The whole example mesh in one file: the richest valid input.
	f.Add(bytes.Join(all[len(files):], []byte("\n---\n")))

	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "in.yaml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		set, err := config.LoadFiles([]string{path}, config.Options{})
		if err != nil {
			t.Logf("rejected: %v", err)
			checkErrors(t, path, err)
			return
		}
		t.Logf("accepted %d objects", len(set.Objects))

		// Determinism: the same content builds the same version.
		snap := config.Build(set)
		if again := config.Build(set); again.Version != snap.Version {
			t.Fatalf("Build is not deterministic: version %s then %s", snap.Version, again.Version)
		}

		// Round trip through the rendered form.
		r1 := render(t, set)
		path2 := filepath.Join(dir, "rendered.yaml")
		if err := os.WriteFile(path2, r1, 0o644); err != nil {
			t.Fatal(err)
		}
		set2, err := config.LoadFiles([]string{path2}, config.Options{})
		if err != nil {
			t.Fatalf("accepted config renders to YAML that is rejected:\n%v\n--- input\n%s\n--- rendered\n%s", err, data, r1)
		}
		if r2 := render(t, set2); !bytes.Equal(r1, r2) {
			t.Fatalf("render(parse(render(x))) != render(x):\n--- first\n%s\n--- second\n%s", r1, r2)
		}

		// Every generated resource passes Envoy's proto validation.
		gen := xds.NewGenerator(snap)
		for _, p := range fuzzProxies(t, snap) {
			res := gen.Generate(p)
			t.Logf("proxy %s: %d clusters, %d listeners", p.ID, len(res.ByType[resourcev3.ClusterType]), len(res.ByType[resourcev3.ListenerType]))
			for typeURL, list := range res.ByType {
				for _, r := range list {
					if err := xds.Validate(r.Message); err != nil {
						t.Fatalf("valid config generated an invalid %s %q for proxy %s: %v", typeURL, r.Name, p.ID, err)
					}
				}
			}
		}
	})
}

// checkErrors asserts what a user editing the file relies on: every problem
// is listed, points into the file, says what is wrong and names the field.
func checkErrors(t *testing.T, path string, err error) {
	t.Helper()
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("LoadFiles returned %T (%v), want config.Errors", err, err)
	}
	if len(es) == 0 {
		t.Fatalf("LoadFiles returned an empty error list")
	}
	for _, e := range es {
		line := e.Error()
		if strings.TrimSpace(e.Msg) == "" {
			t.Errorf("error without a message: %q", line)
		}
		if e.Source.File != path || !strings.HasPrefix(line, path) {
			t.Errorf("error does not name the file %s: %q", path, line)
		}
		if e.Path != "" && !strings.Contains(line, e.Path) {
			t.Errorf("error for field %s does not name it: %q", e.Path, line)
		}
		if strings.Contains(line, "\n") {
			t.Errorf("error spans several lines, editors cannot link it: %q", line)
		}
	}
}

var apiVersions = map[string]string{
	config.KindService:             "v1",
	config.KindEndpoints:           "v1",
	config.KindEndpointSlice:       "discovery.k8s.io/v1",
	config.KindServiceEntry:        "networking.istio.io/v1",
	config.KindWorkloadEntry:       "networking.istio.io/v1",
	config.KindVirtualService:      "networking.istio.io/v1",
	config.KindDestinationRule:     "networking.istio.io/v1",
	config.KindGateway:             "networking.istio.io/v1",
	config.KindSidecar:             "networking.istio.io/v1",
	config.KindPeerAuthentication:  "security.istio.io/v1",
	config.KindAuthorizationPolicy: "security.istio.io/v1",
	config.KindMeshConfig:          "meshlite.io/v1alpha1",
}

// render writes a set back as a multi-document YAML file, objects in the
// set's (sorted) order.
func render(t *testing.T, set *config.Set) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, o := range set.Objects {
		apiVersion, ok := apiVersions[o.Kind]
		if !ok {
			t.Fatalf("render: unexpected kind %s", o.Kind)
		}
		var doc map[string]any
		switch v := o.Value.(type) {
		case *meshv1alpha1.MeshConfig:
			b, err := protojson.Marshal(v)
			if err != nil {
				t.Fatalf("render MeshConfig: %v", err)
			}
			var spec any
			if err := json.Unmarshal(b, &spec); err != nil {
				t.Fatal(err)
			}
			doc = map[string]any{"spec": spec}
		default:
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("render %s %s/%s: %v", o.Kind, o.Namespace, o.Name, err)
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			// Read-only fields a user never writes: drop them so the
			// strict decoder sees what a user would.
			delete(doc, "status")
			if md, ok := doc["metadata"].(map[string]any); ok {
				delete(md, "creationTimestamp")
			}
		}
		doc["apiVersion"] = apiVersion
		doc["kind"] = o.Kind
		y, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatalf("render %s: %v", o.Kind, err)
		}
		out.WriteString("---\n")
		out.Write(y)
	}
	return out.Bytes()
}

// fuzzProxies are a sidecar and a proxyless gRPC client in every namespace
// the snapshot mentions, so that namespace-scoped rules are exercised.
func fuzzProxies(t *testing.T, s *model.Snapshot) []*xds.Proxy {
	t.Helper()
	nss := map[string]bool{"default": true}
	for _, svc := range s.Services {
		nss[svc.Namespace] = true
	}
	var out []*xds.Proxy
	// Workloads that serve a service get inbound listeners too: one proxy per
	// kind at the first endpoint of the first few services.
	for i, svc := range s.Services {
		if i >= 3 || len(svc.Endpoints) == 0 {
			break
		}
		ep := svc.Endpoints[0]
		for _, gen := range []string{"", xds.GeneratorGRPC} {
			md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": ep.Namespace, "GENERATOR": gen, "SERVICE_ACCOUNT": ep.ServiceAccount})
			id := fmt.Sprintf("sidecar~%s~ep%d.%s~%s.svc.cluster.local", ep.Address, i, ep.Namespace, ep.Namespace)
			if p, err := xds.ParseNode(&core.Node{Id: id, Metadata: md}); err == nil {
				out = append(out, p)
			}
		}
	}
	for ns := range nss {
		if len(nss) > 4 && ns != "default" {
			continue // bound the work per input
		}
		for i, gen := range []string{"", xds.GeneratorGRPC} {
			md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": ns, "GENERATOR": gen, "SERVICE_ACCOUNT": "default"})
			id := fmt.Sprintf("sidecar~10.0.0.%d~pod%d.%s~%s.svc.cluster.local", i+1, i, ns, ns)
			p, err := xds.ParseNode(&core.Node{Id: id, Metadata: md})
			if err != nil {
				continue // a namespace that is not a valid DNS label cannot be a node
			}
			out = append(out, p)
		}
	}
	return out
}
