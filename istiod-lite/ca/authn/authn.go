// Package authn authenticates callers of istiod-lite's CA: a Kubernetes-style
// JWT bearer token checked offline against a JWKS file, or a client
// certificate issued by the CA (renewal). Each returns the caller's SPIFFE
// identity, which the CA then compares with the SANs the caller asks for.
package authn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/meshlite/meshlite/sds/spiffe"
)

// Authenticator finds who is calling from a gRPC request context.
type Authenticator interface {
	// Authenticate returns the caller's identity, ErrNoCredentials when the
	// request carries no credential of this kind, or another error when it
	// carries one that is not acceptable.
	Authenticate(ctx context.Context) (spiffe.Identity, error)
}

// ErrNoCredentials means the request has no credential of the kind an
// Authenticator handles, so the next one may be tried.
var ErrNoCredentials = errors.New("no credentials")

// Chain tries each authenticator in turn and accepts the first identity
// found. If none finds one, the error explains every rejected credential, or
// what to send when there was none at all.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context) (spiffe.Identity, error) {
	var errs []string
	for _, a := range c {
		id, err := a.Authenticate(ctx)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ErrNoCredentials) {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) == 0 {
		return spiffe.Identity{}, fmt.Errorf("%w: send an \"authorization: Bearer <token>\" header with a service account token, "+
			"or a client certificate issued by this CA", ErrNoCredentials)
	}
	return spiffe.Identity{}, errors.New(strings.Join(errs, "; "))
}
