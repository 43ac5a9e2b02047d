package config

import (
	"regexp"
	"strings"
)

// RFC 1123 names as Kubernetes validates them. Two regexps here keep
// k8s.io/apimachinery (and its dependency tree) out of the agent binary.
var dns1123LabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// isDNS1123Label: a namespace name.
func isDNS1123Label(s string) bool { return len(s) <= 63 && dns1123LabelRE.MatchString(s) }

// isDNS1123Subdomain: a service account name or DNS domain.
func isDNS1123Subdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !dns1123LabelRE.MatchString(label) {
			return false
		}
	}
	return true
}
