package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// AppProber is one kubelet probe that injection moved onto the status port;
// the agent runs it against the application. Exactly one action is set.
type AppProber struct {
	HTTPGet        *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *corev1.GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32                   `json:"timeoutSeconds,omitempty"`
}

// PrometheusScrape is the application's own metrics endpoint, from its
// prometheus.io/* annotations; values are strings as in the annotations.
type PrometheusScrape struct {
	Scrape string `json:"scrape,omitempty"`
	Path   string `json:"path,omitempty"`
	Port   string `json:"port,omitempty"`
}

// AppProbePathPrefix is where rewritten probes live on the status port.
const AppProbePathPrefix = "/app-health/"

// decodeStrict decodes JSON refusing unknown fields, so a misspelt key fails loudly.
func decodeStrict(v string, dst any) error {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("not valid JSON for this variable: %w", err)
	}
	if dec.More() {
		return errors.New("not valid JSON for this variable: trailing data after the object")
	}
	return nil
}

func applyAppProbers(c *Config, v string) error {
	probers := map[string]AppProber{}
	if err := decodeStrict(v, &probers); err != nil {
		return err
	}
	paths := make([]string, 0, len(probers))
	for p := range probers {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var problems []string
	for _, p := range paths {
		if err := checkProber(p, probers[p]); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", p, err))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	c.App.KubeAppProbers = probers
	return nil
}

func checkProber(path string, p AppProber) error {
	if !strings.HasPrefix(path, AppProbePathPrefix) {
		return fmt.Errorf("path must start with %s", AppProbePathPrefix)
	}
	n := 0
	var port int
	if p.HTTPGet != nil {
		n++
		port = intOrStringPort(p.HTTPGet.Port)
	}
	if p.TCPSocket != nil {
		n++
		port = intOrStringPort(p.TCPSocket.Port)
	}
	if p.GRPC != nil {
		n++
		port = int(p.GRPC.Port)
	}
	if n != 1 {
		return fmt.Errorf("has %d of httpGet, tcpSocket, grpc; exactly one is required", n)
	}
	if port < 1 || port > 65535 {
		return errors.New("port must be a number from 1 to 65535 (named ports are resolved by injection)")
	}
	if p.TimeoutSeconds < 0 {
		return errors.New("timeoutSeconds must be 0 or more")
	}
	return nil
}

func intOrStringPort(p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return int(p.IntVal)
	}
	n, err := strconv.Atoi(p.StrVal)
	if err != nil {
		return 0
	}
	return n
}

func applyPrometheus(c *Config, v string) error {
	var s PrometheusScrape
	if err := decodeStrict(v, &s); err != nil {
		return err
	}
	if s.Scrape != "" {
		if _, err := strconv.ParseBool(s.Scrape); err != nil {
			return fmt.Errorf("scrape %q is not true or false", s.Scrape)
		}
	}
	if s.Port != "" {
		if n, err := strconv.Atoi(s.Port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", s.Port)
		}
	}
	if s.Path != "" && !strings.HasPrefix(s.Path, "/") {
		return fmt.Errorf("path %q must start with /", s.Path)
	}
	c.App.Prometheus = &s
	return nil
}

// metadataFromEnv collects ISTIO_META_* and ISTIO_METAJSON_* into node
// metadata. When both name the same key the JSON one wins, whatever the order
// of the environment.
func metadataFromEnv(environ []string, es *Errors) map[string]any {
	md := map[string]any{}
	var jsonVars []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, MetaJSONPrefix):
			jsonVars = append(jsonVars, kv)
		case strings.HasPrefix(k, MetaPrefix):
			md[strings.TrimPrefix(k, MetaPrefix)] = v
		}
	}
	sort.Strings(jsonVars)
	for _, kv := range jsonVars {
		k, v, _ := strings.Cut(kv, "=")
		var val any
		if err := json.Unmarshal([]byte(v), &val); err != nil {
			es.add(k, v, "not valid JSON", `any JSON value, e.g. {"key":"value"}`)
			continue
		}
		md[strings.TrimPrefix(k, MetaJSONPrefix)] = val
	}
	return md
}
