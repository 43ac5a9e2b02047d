package config

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// decodeSpec decodes an Istio spec (as a generic JSON value) strictly. Istio's generated JSON shims
// accept unknown fields silently, so the spec is first walked against the
// proto descriptor to report unknown fields, wrong types, bad enum values and
// unparsable durations with their exact paths; only then is it decoded with the
// same shim Istio uses (which accepts Go durations such as 100ms).
func decodeSpec(r *reporter, v any, spec proto.Message) bool {
	return decodeProto(r, root("spec"), v, spec)
}

// decodeProto decodes v, the generic JSON value found at p, into msg with the
// checks of decodeSpec. v is pruned in place.
func decodeProto(r *reporter, p fieldPath, v any, msg proto.Message) bool {
	if v == nil {
		return true
	}
	// Invalid values are pruned by the walk, so the rest of the spec still
	// decodes and gets its semantic checks: the user sees every problem at once.
	walkMessage(r, p, v, msg.ProtoReflect().Descriptor())
	pruned, err := json.Marshal(v)
	if err != nil {
		return false
	}
	u, ok := msg.(json.Unmarshaler)
	if !ok {
		return false
	}
	if err := u.UnmarshalJSON(pruned); err != nil {
		r.errorf(p, "%v", err)
		return false
	}
	return true
}

// walkMessage reports every schema problem under p and deletes the offending
// keys from v. It returns false when v itself is unusable.
func walkMessage(r *reporter, p fieldPath, v any, md protoreflect.MessageDescriptor) bool {
	if ok, isWKT := wkt(r, p, v, md); isWKT {
		return ok
	}
	m, ok := v.(map[string]any)
	if !ok {
		r.errorf(p, "got %s, want an object", jsonType(v))
		return false
	}
	oneofs := map[protoreflect.FullName]string{}
	for _, key := range sortedKeys(m) {
		val := m[key]
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		fp := p.field(key)
		if fd == nil {
			r.errorf(fp, "unknown field; %s", suggestFields(md))
			delete(m, key)
			continue
		}
		if val == nil {
			continue // null means unset
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if prev, dup := oneofs[od.FullName()]; dup {
				r.errorf(fp, "only one of %s and %s may be set", prev, key)
				delete(m, key)
				continue
			}
			oneofs[od.FullName()] = key
		}
		if !walkField(r, fp, val, fd) {
			delete(m, key)
		}
	}
	return true
}

// walkField returns false when the whole field must be dropped; an invalid
// list element or map value drops its field, which keeps indexes in later
// messages equal to those in the file.
func walkField(r *reporter, p fieldPath, v any, fd protoreflect.FieldDescriptor) bool {
	switch {
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			r.errorf(p, "got %s, want an object", jsonType(v))
			return false
		}
		valid := true
		for _, k := range sortedKeys(m) {
			if m[k] != nil && !walkValue(r, p.key(k), m[k], fd.MapValue()) {
				valid = false
			}
		}
		return valid
	case fd.IsList():
		l, ok := v.([]any)
		if !ok {
			r.errorf(p, "got %s, want a list", jsonType(v))
			return false
		}
		valid := true
		for i, e := range l {
			if !walkValue(r, p.index(i), e, fd) {
				valid = false
			}
		}
		return valid
	default:
		return walkValue(r, p, v, fd)
	}
}

// walkValue checks one singular value against the field's kind.
func walkValue(r *reporter, p fieldPath, v any, fd protoreflect.FieldDescriptor) bool {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return walkMessage(r, p, v, fd.Message())
	case protoreflect.EnumKind:
		return checkEnum(r, p, v, fd.Enum())
	case protoreflect.BoolKind:
		return want[bool](r, p, v, "true or false")
	case protoreflect.StringKind, protoreflect.BytesKind:
		return want[string](r, p, v, "a string")
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return want[json.Number](r, p, v, "a number")
	default: // integers; the JSON mapping also accepts them quoted
		return checkInteger(r, p, v, fd.Kind())
	}
}

func want[T any](r *reporter, p fieldPath, v any, what string) bool {
	if _, ok := v.(T); !ok {
		r.errorf(p, "got %s, want %s", jsonType(v), what)
		return false
	}
	return true
}

func checkInteger(r *reporter, p fieldPath, v any, k protoreflect.Kind) bool {
	var s string
	switch n := v.(type) {
	case json.Number:
		s = n.String()
	case string:
		s = n
	default:
		r.errorf(p, "got %s, want an integer", jsonType(v))
		return false
	}
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		if _, err := strconv.ParseUint(s, 10, 64); err != nil {
			r.errorf(p, "got %s, want an integer", s)
			return false
		}
	}
	unsigned := k == protoreflect.Uint32Kind || k == protoreflect.Uint64Kind || k == protoreflect.Fixed32Kind || k == protoreflect.Fixed64Kind
	if unsigned && strings.HasPrefix(s, "-") {
		r.errorf(p, "got %s, want a non-negative integer", s)
		return false
	}
	return true
}

func checkEnum(r *reporter, p fieldPath, v any, ed protoreflect.EnumDescriptor) bool {
	allowed := func() string {
		var names []string
		for i := 0; i < ed.Values().Len(); i++ {
			names = append(names, string(ed.Values().Get(i).Name()))
		}
		return strings.Join(names, ", ")
	}
	switch x := v.(type) {
	case string:
		if ed.Values().ByName(protoreflect.Name(x)) != nil {
			return true
		}
		r.errorf(p, "unknown value %q; allowed: %s", x, allowed())
	case json.Number:
		n, err := x.Int64()
		if err == nil && ed.Values().ByNumber(protoreflect.EnumNumber(n)) != nil {
			return true
		}
		r.errorf(p, "unknown value %s; allowed: %s", x, allowed())
	default:
		r.errorf(p, "got %s, want one of %s", jsonType(v), allowed())
	}
	return false
}

// wkt handles the well-known types, whose JSON form is not an object. isWKT
// reports whether md was one, ok whether v is valid for it.
func wkt(r *reporter, p fieldPath, v any, md protoreflect.MessageDescriptor) (ok, isWKT bool) {
	switch md.FullName() {
	case "google.protobuf.Duration":
		s, isString := v.(string)
		if !isString {
			r.errorf(p, "got %s, want a duration string such as 5s or 250ms", jsonType(v))
			return false, true
		}
		if _, err := time.ParseDuration(s); err != nil {
			r.errorf(p, "invalid duration %q; use a number with a unit, such as 5s, 250ms or 1m30s", s)
			return false, true
		}
		return true, true
	case "google.protobuf.Timestamp", "google.protobuf.StringValue", "google.protobuf.BytesValue", "google.protobuf.FieldMask":
		return want[string](r, p, v, "a string"), true
	case "google.protobuf.BoolValue":
		return want[bool](r, p, v, "true or false"), true
	case "google.protobuf.UInt32Value", "google.protobuf.UInt64Value":
		return checkInteger(r, p, v, protoreflect.Uint64Kind), true
	case "google.protobuf.Int32Value", "google.protobuf.Int64Value":
		return checkInteger(r, p, v, protoreflect.Int64Kind), true
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue":
		return want[json.Number](r, p, v, "a number"), true
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any", "google.protobuf.Empty":
		return true, true
	}
	return false, false
}

func suggestFields(md protoreflect.MessageDescriptor) string {
	var names []string
	for i := 0; i < md.Fields().Len(); i++ {
		names = append(names, md.Fields().Get(i).JSONName())
	}
	return fmt.Sprintf("known fields: %s", strings.Join(names, ", "))
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "number " + x.String()
	case string:
		return fmt.Sprintf("string %q", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
