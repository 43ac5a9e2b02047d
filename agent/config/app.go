package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/meshlite/meshlite/agent/probes"
)

// AppProber is one kubelet probe that injection moved onto the status port;
// the agent runs it against the application.
type AppProber = probes.Probe

// PrometheusScrape is the application's own metrics endpoint, from its
// prometheus.io/* annotations; values are strings as in the annotations.
type PrometheusScrape struct {
	Scrape string `json:"scrape,omitempty"`
	Path   string `json:"path,omitempty"`
	Port   string `json:"port,omitempty"`
}

// AppProbePathPrefix is where rewritten probes live on the status port.
const AppProbePathPrefix = probes.PathPrefix

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
	probers, err := probes.Parse(v)
	if err != nil {
		return err
	}
	c.App.KubeAppProbers = probers
	return nil
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
