package xds

import (
	"fmt"
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// BenchmarkGenerate1000Proxies is one push: a new snapshot, then generation
// for a thousand proxyless clients of one shape plus one sidecar per service.
func BenchmarkGenerate1000Proxies(b *testing.B) {
	snap := &model.Snapshot{
		Services:         append(greeter(), bookinfo()...),
		VirtualServices:  []*networkingv1.VirtualService{vs(b, greeterVS), vs(b, reviewsVS)},
		DestinationRules: []*networkingv1.DestinationRule{dr(b, greeterDR), dr(b, reviewsDR)},
	}
	var proxies []*Proxy
	for i := 0; i < 1000; i++ {
		md := grpcMD()
		md["INSTANCE_IPS"] = fmt.Sprintf("10.9.%d.%d", i/256, i%256)
		p, err := ParseNode(node(b, fmt.Sprintf("sidecar~10.9.%d.%d~c-%d.demo~demo.svc.cluster.local", i/256, i%256, i), md))
		if err != nil {
			b.Fatal(err)
		}
		proxies = append(proxies, p)
	}
	b.ReportAllocs()
	for b.Loop() {
		g := NewGenerator(snap)
		for _, p := range proxies {
			_ = g.Generate(p)
		}
	}
}
