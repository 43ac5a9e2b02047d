package caclient

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tokenCredentials reads the token file on every call: the kubelet rotates
// projected tokens in place, and a cached token would eventually be refused.
type tokenCredentials struct {
	path         string
	clusterID    string
	allowNoToken bool // a client certificate can authenticate instead
}

func (t *tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	md := map[string]string{"ClusterID": t.clusterID}
	if t.path == "" {
		return md, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		if t.allowNoToken && errors.Is(err, fs.ErrNotExist) {
			return md, nil
		}
		// Unavailable, not Unauthenticated: the kubelet may not have mounted the
		// projected token yet, so this is worth retrying.
		return nil, status.Errorf(codes.Unavailable, "read service-account token %s: %v (is the istio-token projected volume mounted?)", t.path, err)
	}
	if tok := strings.TrimSpace(string(b)); tok != "" {
		md["authorization"] = "Bearer " + tok
	}
	return md, nil
}

func (t *tokenCredentials) RequireTransportSecurity() bool { return true }
