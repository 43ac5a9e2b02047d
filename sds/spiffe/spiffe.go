// Package spiffe holds the workload identity format shared by the agent (which
// asks for it in a CSR) and istiod-lite's CA (which authorizes it).
package spiffe

import (
	"fmt"
	"net/url"
	"strings"
)

// Scheme is the URI scheme of every SPIFFE ID.
const Scheme = "spiffe"

// DefaultTrustDomain is Istio's default trust domain.
const DefaultTrustDomain = "cluster.local"

// Identity is a Kubernetes-style SPIFFE identity: spiffe://<td>/ns/<ns>/sa/<sa>.
type Identity struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String renders the identity as a SPIFFE URI.
func (id Identity) String() string {
	return fmt.Sprintf("%s://%s/ns/%s/sa/%s", Scheme, id.TrustDomain, id.Namespace, id.ServiceAccount)
}

// URL renders the identity as a URL, the form x509 URI SANs take.
func (id Identity) URL() *url.URL {
	return &url.URL{Scheme: Scheme, Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Validate reports the first part of the identity that cannot appear in a SPIFFE ID.
func (id Identity) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"trust domain", id.TrustDomain}, {"namespace", id.Namespace}, {"service account", id.ServiceAccount},
	} {
		if f.v == "" {
			return fmt.Errorf("spiffe: %s is empty", f.name)
		}
		if strings.ContainsAny(f.v, "/?#:@ ") {
			return fmt.Errorf("spiffe: %s %q contains a character not allowed in a SPIFFE ID", f.name, f.v)
		}
	}
	return nil
}

// Parse reads spiffe://<td>/ns/<ns>/sa/<sa>. Other SPIFFE path shapes are refused
// because authorization in the mesh is by namespace and service account.
func Parse(s string) (Identity, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Identity{}, fmt.Errorf("spiffe: %q is not a URI: %w", s, err)
	}
	if u.Scheme != Scheme {
		return Identity{}, fmt.Errorf("spiffe: %q has scheme %q, want %q", s, u.Scheme, Scheme)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return Identity{}, fmt.Errorf("spiffe: %q is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", s)
	}
	id := Identity{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}
