package bootstrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// Issue is one reason a bootstrap is invalid, at a JSON field path such as
// "static_resources.clusters[0].load_assignment".
type Issue struct {
	Path   string
	Reason string
}

func (i Issue) String() string {
	if i.Path == "" {
		return i.Reason
	}
	return i.Path + ": " + i.Reason
}

// ValidationError lists every reason Envoy would reject a bootstrap.
type ValidationError struct {
	Issues []Issue
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		parts[i] = is.String()
	}
	return "invalid Envoy bootstrap: " + strings.Join(parts, "; ")
}

// Marshal renders a bootstrap as stable, indented JSON (protojson's output is
// deliberately unstable in its whitespace, so it is re-indented).
func Marshal(b *bootstrapv3.Bootstrap) ([]byte, error) {
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding bootstrap: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, fmt.Errorf("indenting bootstrap: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// Parse decodes JSON into a Bootstrap, rejecting unknown fields. On an unknown
// or mistyped field the error's Issue carries the field's path.
func Parse(data []byte) (*bootstrapv3.Bootstrap, error) {
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(data, b); err != nil {
		issue := Issue{Reason: err.Error()}
		var doc any
		if jerr := json.Unmarshal(data, &doc); jerr != nil {
			issue.Reason = "not valid JSON: " + jerr.Error()
		} else if path, reason := locate(doc, b.ProtoReflect().Descriptor(), ""); path != "" || reason != "" {
			issue = Issue{Path: path, Reason: reason}
		}
		return nil, &ValidationError{Issues: []Issue{issue}}
	}
	return b, nil
}

// Validate parses data as Envoy does and checks it with Envoy's
// protoc-gen-validate rules, including the contents of every typed_config.
func Validate(data []byte) (*bootstrapv3.Bootstrap, error) {
	b, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if err := ValidateProto(b); err != nil {
		return nil, err
	}
	return b, nil
}

// ValidateProto runs ValidateAll on b and on every Any inside it, recursively.
func ValidateProto(b *bootstrapv3.Bootstrap) error {
	var issues []Issue
	if err := b.ValidateAll(); err != nil {
		issues = append(issues, pgvIssues("", err)...)
	}
	walkAny(b.ProtoReflect(), "", &issues)
	if len(issues) == 0 {
		return nil
	}
	return &ValidationError{Issues: issues}
}

type validator interface{ ValidateAll() error }

// pgvError is the shape of every protoc-gen-validate error type.
type pgvError interface {
	Field() string
	Reason() string
	Cause() error
	Key() bool
}

// pgvIssues flattens protoc-gen-validate's nested errors into paths.
func pgvIssues(prefix string, err error) []Issue {
	var multi interface{ AllErrors() []error }
	if errors.As(err, &multi) {
		var out []Issue
		for _, e := range multi.AllErrors() {
			out = append(out, pgvIssues(prefix, e)...)
		}
		return out
	}
	var pe pgvError
	if errors.As(err, &pe) {
		path := joinPath(prefix, snake(pe.Field()))
		if pe.Key() {
			path += " (map key)"
		}
		if c := pe.Cause(); c != nil {
			var inner pgvError
			var innerMulti interface{ AllErrors() []error }
			if errors.As(c, &inner) || errors.As(c, &innerMulti) {
				return pgvIssues(path, c)
			}
			return []Issue{{Path: path, Reason: pe.Reason() + ": " + c.Error()}}
		}
		return []Issue{{Path: path, Reason: pe.Reason()}}
	}
	return []Issue{{Path: prefix, Reason: err.Error()}}
}

// walkAny visits every set field; each Any is unpacked, validated and walked.
func walkAny(m protoreflect.Message, path string, issues *[]Issue) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := joinPath(path, string(fd.Name()))
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				var keys []string
				vals := map[string]protoreflect.Message{}
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					keys = append(keys, k.String())
					vals[k.String()] = mv.Message()
					return true
				})
				sort.Strings(keys)
				for _, k := range keys {
					visit(vals[k], fmt.Sprintf("%s[%q]", p, k), issues)
				}
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					visit(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), issues)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			visit(v.Message(), p, issues)
		}
		return true
	})
}

func visit(m protoreflect.Message, path string, issues *[]Issue) {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		walkAny(m, path, issues)
		return
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		*issues = append(*issues, Issue{Path: path, Reason: fmt.Sprintf("cannot decode %s: %v", a.GetTypeUrl(), err)})
		return
	}
	if v, ok := inner.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			*issues = append(*issues, pgvIssues(path, err)...)
		}
	}
	walkAny(inner.ProtoReflect(), path, issues)
}

// locate finds the first field in doc that desc does not accept, to turn
// protojson's line:column error into a path a user can find.
func locate(doc any, desc protoreflect.MessageDescriptor, path string) (string, string) {
	if isWellKnown(desc) {
		return "", ""
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return path, fmt.Sprintf("expected a JSON object for %s", desc.FullName())
	}
	if desc.FullName() == "google.protobuf.Any" {
		url, _ := obj["@type"].(string)
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
		if err != nil {
			return joinPath(path, "@type"), fmt.Sprintf("unknown type %q: not an Envoy extension this agent knows", url)
		}
		rest := map[string]any{}
		for k, v := range obj {
			if k != "@type" {
				rest[k] = v
			}
		}
		if isWellKnown(mt.Descriptor()) {
			return "", ""
		}
		return locate(rest, mt.Descriptor(), path)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fd := desc.Fields().ByName(protoreflect.Name(k))
		if fd == nil {
			fd = desc.Fields().ByJSONName(k)
		}
		p := joinPath(path, k)
		if fd == nil {
			return p, fmt.Sprintf("unknown field %q in %s", k, desc.FullName())
		}
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			if err := checkScalar(fd, obj[k]); err != "" {
				return p, err
			}
			continue
		}
		switch {
		case fd.IsMap():
			m, _ := obj[k].(map[string]any)
			for _, mk := range sortedKeys(m) {
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					if fp, r := locate(m[mk], fd.MapValue().Message(), fmt.Sprintf("%s[%q]", p, mk)); fp != "" || r != "" {
						return fp, r
					}
				}
			}
		case fd.IsList():
			l, ok := obj[k].([]any)
			if !ok {
				return p, "expected a JSON array"
			}
			for i, e := range l {
				if fp, r := locate(e, fd.Message(), fmt.Sprintf("%s[%d]", p, i)); fp != "" || r != "" {
					return fp, r
				}
			}
		default:
			if fp, r := locate(obj[k], fd.Message(), p); fp != "" || r != "" {
				return fp, r
			}
		}
	}
	return "", ""
}

func checkScalar(fd protoreflect.FieldDescriptor, v any) string {
	if fd.IsList() {
		if _, ok := v.([]any); !ok {
			return "expected a JSON array"
		}
		return ""
	}
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			return "expected a string"
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return "expected true or false"
		}
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Uint32Kind, protoreflect.Uint64Kind,
		protoreflect.Sint32Kind, protoreflect.Sint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind,
		protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind, protoreflect.FloatKind, protoreflect.DoubleKind:
		switch x := v.(type) {
		case float64:
		case string:
			if _, err := strconv.ParseFloat(x, 64); err != nil {
				return fmt.Sprintf("%q is not a number", x)
			}
		default:
			return "expected a number"
		}
	case protoreflect.EnumKind:
		if s, ok := v.(string); ok && fd.Enum().Values().ByName(protoreflect.Name(s)) == nil {
			return fmt.Sprintf("%q is not a value of %s", s, fd.Enum().FullName())
		}
	}
	return ""
}

func isWellKnown(d protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(d.FullName()), "google.protobuf.") && d.FullName() != "google.protobuf.Any"
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func joinPath(prefix, field string) string {
	if prefix == "" {
		return field
	}
	if strings.HasPrefix(field, "[") {
		return prefix + field
	}
	return prefix + "." + field
}

// snake turns protoc-gen-validate's Go field names ("StaticResources",
// "Clusters[0]") into the proto names users write ("static_resources").
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 && s[i-1] != '[' && s[i-1] != '.' {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
