package server

import (
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshlite/meshlite/istiod-lite/xds"
)

// wireResource carries a resource already in wire format. go-control-plane
// marshals every resource of every response it sends, once per stream: for a
// thousand sidecars sharing one route config that is a thousand identical
// marshals per push, the largest CPU cost of a push. A message whose only
// content is unknown fields marshals to exactly those bytes, so wrapping the
// bytes generation already made turns that marshal into a copy. The cache
// never looks inside resources (it takes versions from the snapshot's
// VersionMap and names from GetName), and the type URL of each Any comes from
// the request, so the proxy receives the same bytes as before.
type wireResource struct {
	*emptypb.Empty
	name string
}

// GetName is how go-control-plane names resources it does not know (delta responses).
func (w *wireResource) GetName() string { return w.name }

func premarshaled(r xds.Resource) *wireResource {
	m := &emptypb.Empty{}
	m.ProtoReflect().SetUnknown(r.Wire)
	return &wireResource{Empty: m, name: r.Name}
}
