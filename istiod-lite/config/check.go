package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Small field checks shared by the kinds. Each returns or reports a message
// that says what is wrong and what is allowed.

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func checkDNS1123Label(s string) string {
	if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
		return errs[0]
	}
	return ""
}

func checkDNS1123Subdomain(s string) string {
	if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
		return errs[0]
	}
	return ""
}

func checkLabel(key, value string) string {
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return fmt.Sprintf("invalid label key %q: %s", key, errs[0])
	}
	if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
		return fmt.Sprintf("invalid label value %q: %s", value, errs[0])
	}
	return ""
}

func checkLabels(r *reporter, p fieldPath, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		if msg := checkLabel(k, labels[k]); msg != "" {
			r.errorf(p.key(k), "%s", msg)
		}
	}
}

var wildcardLabelRE = regexp.MustCompile(`^\*?[-a-zA-Z0-9]*$`)

// checkHost validates a hostname as Istio's ValidateWildcardDomain does: DNS-1123
// labels, at most 255 characters, a wildcard only in the first label ("*",
// "*.example.com", "*-foo.example.com"). Short names ("reviews") are allowed;
// they are completed with the object's namespace and the domain suffix.
func checkHost(host string) string {
	switch {
	case host == "":
		return "host must not be empty"
	case len(host) > 255:
		return fmt.Sprintf("host %q is longer than 255 characters", host)
	case host == "*":
		return ""
	}
	first, rest, hasRest := strings.Cut(host, ".")
	if len(first) > 63 || first == "" || !wildcardLabelRE.MatchString(first) || strings.HasSuffix(first, "-") || (strings.HasPrefix(first, "-")) {
		return fmt.Sprintf("invalid host %q: label %q must be a DNS-1123 label, optionally starting with a single * wildcard", host, first)
	}
	if !hasRest {
		return ""
	}
	for _, l := range strings.Split(rest, ".") {
		if msg := checkDNS1123Label(strings.ToLower(l)); msg != "" {
			return fmt.Sprintf("invalid host %q: label %q: %s; wildcards are only allowed in the first label", host, l, msg)
		}
	}
	return ""
}

// checkNamespacedHost validates the "namespace/host" form of Gateway and
// Sidecar hosts, where namespace may be "*", "." or "~".
func checkNamespacedHost(s string) string {
	ns, host, ok := strings.Cut(s, "/")
	if !ok {
		return fmt.Sprintf("host %q must have the form namespace/dnsName, e.g. ./reviews.default.svc.cluster.local or */*", s)
	}
	if ns != "*" && ns != "." && ns != "~" {
		if msg := checkDNS1123Label(ns); msg != "" {
			return fmt.Sprintf("invalid namespace %q in host %q: %s", ns, s, msg)
		}
	}
	return checkHost(host)
}

func checkPort(r *reporter, p fieldPath, port int64) {
	if port < 1 || port > 65535 {
		r.errorf(p, "port %d is out of range; it must be between 1 and 65535", port)
	}
}

// checkDuration enforces Istio's rule for durations: at least 1ms (Envoy
// works in milliseconds; zero or negative is a mistake, not "disabled").
func checkDuration(r *reporter, p fieldPath, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		r.errorf(p, "invalid duration: %v", err)
		return
	}
	if d.AsDuration() < time.Millisecond {
		r.errorf(p, "duration %s must be at least 1ms", d.AsDuration())
	}
}

func checkPercent(r *reporter, p fieldPath, v float64) {
	if v < 0 || v > 100 {
		r.errorf(p, "percentage %v is out of range; it must be between 0 and 100", v)
	}
}

// checkRegex compiles a regex as Envoy will (RE2 syntax, which Go's regexp implements).
func checkRegex(r *reporter, p fieldPath, re string) {
	if _, err := regexp.Compile(re); err != nil {
		r.errorf(p, "invalid RE2 regex %q: %v", re, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
}

func checkIPOrCIDR(r *reporter, p fieldPath, s string) {
	if _, err := netip.ParseAddr(s); err == nil {
		return
	}
	if _, err := netip.ParsePrefix(s); err == nil {
		return
	}
	r.errorf(p, "%q is neither an IP address nor a CIDR block", s)
}

func checkIP(r *reporter, p fieldPath, s string) {
	if _, err := netip.ParseAddr(s); err != nil {
		r.errorf(p, "%q is not an IP address", s)
	}
}
