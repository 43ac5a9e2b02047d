// Package config reads Istio-style YAML (Kubernetes Services and Endpoints,
// Istio networking and security resources, and an optional MeshConfig),
// validates it the way Istio's webhook and analyzers do, and builds a
// model.Snapshot from a valid set. It is istiod-lite's Galley: every problem is
// reported at once with its file, document, line and field path.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// Object is one parsed document that passed its own validation.
type Object struct {
	Kind      string
	Name      string
	Namespace string
	Source    model.Source
	// Value is the typed object: *corev1.Service, *corev1.Endpoints,
	// *discoveryv1.EndpointSlice, *networkingv1.<Kind>, *securityv1.<Kind>, or
	// *meshv1alpha1.MeshConfig for the MeshConfig document.
	Value any

	node *yaml.Node        // for line numbers of cross-object errors
	ok   bool              // false when the document had errors; kept only for reporting
	sum  [sha256.Size]byte // content hash, for the snapshot version
}

// Options tune how documents are interpreted.
type Options struct {
	// DefaultNamespace applies to objects without metadata.namespace, as
	// `kubectl apply` does with the current namespace. Default "default".
	DefaultNamespace string
	// DomainSuffix completes short hostnames and names Kubernetes services
	// <name>.<ns>.svc.<DomainSuffix>. Default "cluster.local".
	DomainSuffix string
	// Mesh is the base mesh config (pilot-discovery's --meshConfig file); a
	// MeshConfig document or istio ConfigMap in the set overrides its fields.
	Mesh *meshv1alpha1.MeshConfig
}

func (o Options) withDefaults() Options {
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = "default"
	}
	if o.DomainSuffix == "" {
		o.DomainSuffix = "cluster.local"
	}
	return o
}

// envelope is the Kubernetes object frame around an Istio spec. Decoding it
// strictly rejects unknown top-level and metadata fields.
type envelope struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            json.RawMessage   `json:"spec,omitempty"`
	Status          json.RawMessage   `json:"status,omitempty"`
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// ParseFile splits data into YAML documents and decodes and validates each one
// on its own. Cross-object rules (duplicates, subset references) need the
// whole set: see Validate. Objects with errors are not returned.
func ParseFile(file string, data []byte, opts Options) ([]*Object, Errors) {
	objs, errs := parseFile(file, data, opts.withDefaults())
	var good []*Object
	for _, o := range objs {
		if o.ok {
			good = append(good, o)
		}
	}
	errs.sort()
	return good, errs
}

func parseFile(file string, data []byte, opts Options) ([]*Object, Errors) {
	var (
		objs []*Object
		errs Errors
	)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for idx := 0; ; idx++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line := 0
			if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
				line, _ = strconv.Atoi(m[1])
			}
			errs = append(errs, Error{
				Source: model.Source{File: file, Document: idx},
				Line:   line,
				Msg:    fmt.Sprintf("invalid YAML: %s; the rest of the file is skipped", strings.TrimPrefix(err.Error(), "yaml: ")),
			})
			break
		}
		if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
			continue // empty document, e.g. a trailing ---
		}
		top := doc.Content[0]
		src := model.Source{File: file, Document: idx, Line: top.Line}
		if top.Kind != yaml.MappingNode {
			errs = append(errs, Error{Source: src, Line: top.Line, Msg: "document is not a mapping; expected a Kubernetes-style object with apiVersion, kind, metadata and spec"})
			continue
		}
		items, isList := listItems(top)
		if !isList {
			items = []*yaml.Node{top}
		}
		for _, item := range items {
			src := src
			src.Line = item.Line
			if item.Kind != yaml.MappingNode {
				errs = append(errs, Error{Source: src, Line: item.Line, Msg: "list item is not a mapping; expected a Kubernetes-style object"})
				continue
			}
			if o := parseDocument(src, item, opts, &errs); o != nil {
				objs = append(objs, o)
			}
		}
	}
	return objs, errs
}

// listItems returns the items of a `kind: List` document (what `kubectl get
// -o yaml` prints), so that its objects are read as if they were documents.
func listItems(top *yaml.Node) ([]*yaml.Node, bool) {
	var kind, apiVersion string
	var items *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		switch top.Content[i].Value {
		case "kind":
			kind = top.Content[i+1].Value
		case "apiVersion":
			apiVersion = top.Content[i+1].Value
		case "items":
			items = top.Content[i+1]
		}
	}
	if kind != "List" || apiVersion != "v1" {
		return nil, false
	}
	if items == nil || items.Kind != yaml.SequenceNode {
		return nil, true
	}
	return items.Content, true
}

func parseDocument(src model.Source, top *yaml.Node, opts Options, errs *Errors) *Object {
	r := &reporter{src: src, node: top, errs: errs}
	doc, err := nodeValue(top)
	if err != nil {
		r.errorf(nil, "invalid document: %v", err)
		return nil
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		r.errorf(nil, "cannot convert document to JSON: %v", err)
		return nil
	}
	var tm metav1.TypeMeta
	_ = json.Unmarshal(raw, &tm) // a malformed frame is reported by the strict decode below
	if tm.Kind == "" || tm.APIVersion == "" {
		r.errorf(nil, "apiVersion and kind are required")
		return nil
	}
	k, msg := lookupKind(tm.APIVersion, tm.Kind)
	if k == nil {
		r.errorf(root("kind"), "%s", msg)
		return nil
	}
	r.kind = k.kind

	before := len(*errs)
	o := &Object{Kind: k.kind, Source: src, node: top}
	if k.core {
		o.Value = k.decodeCore(r, raw, opts)
	} else {
		var env envelope
		if !strictDecode(r, raw, &env) {
			return nil
		}
		setIdentity(r, &env.Metadata, opts, k.clusterScoped, k.nameOptional)
		var spec any
		if m, ok := doc.(map[string]any); ok {
			spec = m["spec"]
		}
		o.Value = k.decodeIstio(r, &env, spec)
	}
	o.Name, o.Namespace = r.name, r.namespace
	if _, isMesh := o.Value.(*meshv1alpha1.MeshConfig); isMesh {
		o.Kind = KindMeshConfig // also when it came from the istio ConfigMap
	}
	// Errors found while decoding, before metadata was known, get the identity too.
	for i := before; i < len(*errs); i++ {
		if e := &(*errs)[i]; e.Name == "" && e.Namespace == "" {
			e.Namespace, e.Name = o.Namespace, o.Name
		}
	}
	o.ok = o.Value != nil && len(*errs) == before
	if o.ok {
		o.sum = objectSum(o)
	}
	return o
}

// setIdentity checks metadata.name, applies the default namespace and records
// both on the reporter so later errors name the object.
func setIdentity(r *reporter, m *metav1.ObjectMeta, opts Options, clusterScoped, nameOptional bool) {
	if m.Namespace == "" && !clusterScoped {
		m.Namespace = opts.DefaultNamespace
	}
	r.name, r.namespace = m.Name, m.Namespace
	switch {
	case m.Name == "" && nameOptional:
	case m.Name == "":
		r.errorf(root("metadata").field("name"), "name is required")
	default:
		if msg := checkDNS1123Subdomain(m.Name); msg != "" {
			r.errorf(root("metadata").field("name"), "invalid name %q: %s", m.Name, msg)
		}
	}
	if m.Namespace != "" {
		if msg := checkDNS1123Label(m.Namespace); msg != "" {
			r.errorf(root("metadata").field("namespace"), "invalid namespace %q: %s", m.Namespace, msg)
		}
	}
	for key, v := range m.Labels {
		if msg := checkLabel(key, v); msg != "" {
			r.errorf(root("metadata").field("labels").key(key), "%s", msg)
		}
	}
}

// strictDecode decodes raw into v, reporting each unknown or duplicate field
// at its path. Those are reported but do not stop decoding, so the rest of
// the object is still checked; only a malformed value does.
func strictDecode(r *reporter, raw []byte, v any) bool {
	strict, err := sigsjson.UnmarshalStrict(raw, v, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	if err != nil {
		r.errorf(nil, "%s", cleanJSONError(err))
		return false
	}
	for _, e := range strict {
		msg := e.Error()
		if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
			r.errorf(parseDotted(m[1]), "unknown field; check the spelling and the apiVersion")
			continue
		}
		r.errorf(nil, "%s", msg)
	}
	return true
}

var unknownFieldRE = regexp.MustCompile(`unknown field "([^"]+)"`)

// cleanJSONError turns encoding/json's Go-centric type errors into the field
// path and expectation a YAML author understands.
func cleanJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s: got %s, want %s", te.Field, te.Value, te.Type)
	}
	return err.Error()
}

// parseDotted converts a JSON path like spec.ports[0].name into a fieldPath.
func parseDotted(s string) fieldPath {
	var p fieldPath
	for _, part := range strings.Split(s, ".") {
		name, rest, _ := strings.Cut(part, "[")
		p = p.field(name)
		for rest != "" {
			idx, tail, _ := strings.Cut(rest, "]")
			if n, err := strconv.Atoi(idx); err == nil {
				p = p.index(n)
			} else {
				p = p.key(idx)
			}
			_, rest, _ = strings.Cut(tail, "[")
		}
	}
	return p
}
