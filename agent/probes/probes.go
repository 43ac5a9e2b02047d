// Package probes is the format of ISTIO_KUBE_APP_PROBERS: the kubelet probes
// that injection moved onto the agent's status port, keyed by their rewritten
// path (/app-health/<container>/livez). The config validates it with Parse,
// and the status server runs what Parse returns; one parser serves both, and
// the agent does not link Kubernetes' API types for three small structs.
package probes

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// PathPrefix is where rewritten probes live on the status port.
const PathPrefix = "/app-health/"

// Probe is one container probe as written in the pod spec, with named ports
// resolved to numbers by the injector. Exactly one action is set.
type Probe struct {
	HTTPGet        *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32            `json:"timeoutSeconds,omitempty"`
}

// HTTPGetAction is Kubernetes' HTTPGetAction.
type HTTPGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        Port         `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

// HTTPHeader is one header the probe sends.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TCPSocketAction is Kubernetes' TCPSocketAction.
type TCPSocketAction struct {
	Port Port   `json:"port"`
	Host string `json:"host,omitempty"`
}

// GRPCAction is Kubernetes' GRPCAction.
type GRPCAction struct {
	Port    int     `json:"port"`
	Service *string `json:"service,omitempty"`
}

// Port is Kubernetes' IntOrString as a probe port: a number, or a numeric string.
type Port int

// UnmarshalJSON accepts 8080 and "8080"; a named port ("http") is an error
// because the injector resolves names before the agent sees them.
func (p *Port) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*p = Port(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("port %s is neither a number nor a string", b)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("port %q is a named port; the injector must resolve it to the container port number", s)
	}
	*p = Port(n)
	return nil
}

// Number is the probe's target port.
func (p Probe) Number() int {
	switch {
	case p.HTTPGet != nil:
		return int(p.HTTPGet.Port)
	case p.TCPSocket != nil:
		return int(p.TCPSocket.Port)
	case p.GRPC != nil:
		return p.GRPC.Port
	}
	return 0
}

// Parse decodes and validates the JSON. Unknown fields are errors, so that a
// misspelt key fails loudly instead of silently probing the wrong thing.
// Errors never quote header values, which may be credentials.
func Parse(raw string) (map[string]Probe, error) {
	out := map[string]Probe{}
	if strings.TrimSpace(raw) == "" {
		return out, nil
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("not valid JSON for this variable: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not valid JSON for this variable: trailing data after the object")
	}
	paths := make([]string, 0, len(out))
	for p := range out {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var problems []string
	for _, p := range paths {
		if err := check(p, out[p]); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", p, err))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}

func check(path string, p Probe) error {
	if !strings.HasPrefix(path, PathPrefix) {
		return fmt.Errorf("path must start with %s", PathPrefix)
	}
	n := 0
	for _, set := range []bool{p.HTTPGet != nil, p.TCPSocket != nil, p.GRPC != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("has %d of httpGet, tcpSocket, grpc; exactly one is required", n)
	}
	if port := p.Number(); port < 1 || port > 65535 {
		return errors.New("port must be a number from 1 to 65535 (named ports are resolved by injection)")
	}
	if p.HTTPGet != nil {
		switch strings.ToUpper(p.HTTPGet.Scheme) {
		case "", "HTTP", "HTTPS":
		default:
			return fmt.Errorf("scheme %q is not HTTP or HTTPS", p.HTTPGet.Scheme)
		}
	}
	if p.TimeoutSeconds < 0 {
		return errors.New("timeoutSeconds must be 0 or more")
	}
	return nil
}
