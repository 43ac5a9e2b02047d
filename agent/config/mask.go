package config

import (
	"maps"
	"net/url"
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/meshlite/meshlite/agent/probes"
)

// Redacted replaces secret values in Masked output.
const Redacted = "<redacted>"

// secretNameRE matches names of settings whose value is secret material
// (tracing access tokens, passwords in proxyMetadata, Authorization headers).
// Paths to secrets (…_PATH, …File) are not secret and stay visible.
var secretNameRE = regexp.MustCompile(`(?i)(token|secret|passw(or)?d|credential|api_?key|private_?key|authorization|cookie|bearer)`)

func isSecretName(name string) bool {
	l := strings.ToLower(name)
	if strings.HasSuffix(l, "path") || strings.HasSuffix(l, "file") || strings.HasSuffix(l, "name") || strings.HasSuffix(l, "dir") {
		return false
	}
	return secretNameRE.MatchString(name)
}

// Masked returns a deep copy of c that is safe to print or log: values of
// secret-looking keys and fields are replaced by Redacted, and passwords in
// URLs are removed. The agent itself never runs from a masked copy.
func (c *Config) Masked() *Config {
	m := *c
	m.InstanceIPs = append([]string(nil), c.InstanceIPs...)
	m.Sources = append([]string(nil), c.Sources...)
	if c.Mesh != nil {
		m.Mesh = proto.Clone(c.Mesh).(*meshconfig.MeshConfig)
		maskProto(m.Mesh.ProtoReflect())
	}
	if c.Proxy != nil {
		m.Proxy = proto.Clone(c.Proxy).(*meshconfig.ProxyConfig)
		maskProto(m.Proxy.ProtoReflect())
	}
	m.NodeMetadata = maskAny(c.NodeMetadata).(map[string]any)
	m.ControlPlane.CAAddress = maskURL(c.ControlPlane.CAAddress)
	if c.App.KubeAppProbers != nil {
		m.App.KubeAppProbers = make(map[string]AppProber, len(c.App.KubeAppProbers))
		for k, p := range c.App.KubeAppProbers {
			if p.HTTPGet != nil {
				h := *p.HTTPGet
				h.HTTPHeaders = make([]probes.HTTPHeader, len(p.HTTPGet.HTTPHeaders))
				for i, hd := range p.HTTPGet.HTTPHeaders {
					if isSecretName(hd.Name) {
						hd.Value = Redacted
					}
					h.HTTPHeaders[i] = hd
				}
				p.HTTPGet = &h
			}
			m.App.KubeAppProbers[k] = p
		}
	}
	return &m
}

// maskProto redacts, in place, string fields and string map values whose
// field or key name looks secret, recursing into messages.
func maskProto(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				switch {
				case fd.MapValue().Message() != nil:
					maskProto(mv.Message())
				case fd.MapValue().Kind() == protoreflect.StringKind && isSecretName(k.String()):
					v.Map().Set(k, protoreflect.ValueOfString(Redacted))
				}
				return true
			})
		case fd.IsList():
			if fd.Message() != nil {
				for i := 0; i < v.List().Len(); i++ {
					maskProto(v.List().Get(i).Message())
				}
			}
		case fd.Message() != nil:
			maskProto(v.Message())
		case fd.Kind() == protoreflect.StringKind:
			switch {
			case isSecretName(string(fd.Name())):
				m.Set(fd, protoreflect.ValueOfString(Redacted))
			case strings.Contains(v.String(), "@"):
				m.Set(fd, protoreflect.ValueOfString(maskURL(v.String())))
			}
		}
		return true
	})
}

// maskAny redacts secret-looking keys in decoded JSON (node metadata).
func maskAny(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := maps.Clone(t)
		if out == nil {
			out = map[string]any{}
		}
		for k, val := range out {
			if isSecretName(k) {
				out[k] = Redacted
			} else {
				out[k] = maskAny(val)
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = maskAny(e)
		}
		return out
	default:
		return v
	}
}

// maskURL hides the password of a URL with user info; other strings pass.
func maskURL(s string) string {
	if !strings.Contains(s, "://") || !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// MaskEnviron returns environ with the values of secret-looking variables
// replaced by Redacted, so that output derived from the environment (node
// metadata in a rendered bootstrap) can be printed by `check`.
func MaskEnviron(environ []string) []string {
	out := make([]string, len(environ))
	for i, kv := range environ {
		if k, _, ok := strings.Cut(kv, "="); ok && isSecretName(k) {
			kv = k + "=" + Redacted
		}
		out[i] = kv
	}
	return out
}
