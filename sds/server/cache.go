package server

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
)

const versionPrefix = "meshlite-sds-"

// waitingCache holds a first SDS request until one of its resources exists.
// The linear cache answers a first request at once, even with nothing in it;
// Envoy would then wait for `default` anyway, but an empty answer reads like
// "no such secret" in its logs and in debugging tools. Istio's agent likewise
// blocks the first request until the certificate is ready.
type waitingCache struct{ *cache.LinearCache }

// A NACK of the first push also carries an empty version (Envoy accepted
// nothing yet); answering it would resend the rejected secret, or an empty
// response, so it waits for the next change instead.
func (c waitingCache) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	if req.GetVersionInfo() == "" && req.GetResponseNonce() != "" {
		return c.LinearCache.CreateWatch(withVersion(req), sub, ch)
	}
	if req.GetVersionInfo() == "" && !sub.IsWildcard() {
		have := c.GetResources()
		anyPresent := false
		for name := range sub.SubscribedResources() {
			if _, ok := have[name]; ok {
				anyPresent = true
				break
			}
		}
		if !anyPresent {
			// A version from this cache marks the request as "not initial",
			// so the cache parks the watch until a subscribed name appears.
			req = withVersion(req)
		}
	}
	return c.LinearCache.CreateWatch(req, sub, ch)
}

func withVersion(req *cache.Request) *cache.Request {
	req = proto.Clone(req).(*cache.Request)
	req.VersionInfo = versionPrefix + "0"
	return req
}
