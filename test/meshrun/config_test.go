package meshrun

import (
	"testing"

	"sigs.k8s.io/yaml"
)

func TestVirtualServiceWeights(t *testing.T) {
	for _, tc := range []struct{ v1, v2 int }{{100, 0}, {50, 50}, {0, 100}} {
		var vs struct {
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				Hosts []string
				HTTP  []struct {
					Route []struct {
						Destination struct{ Host, Subset string }
						Weight      int
					}
				} `json:"http"`
			}
		}
		if err := yaml.Unmarshal([]byte(VirtualService(tc.v1, tc.v2)), &vs); err != nil {
			t.Fatal(err)
		}
		r := vs.Spec.HTTP[0].Route
		if r[0].Destination.Subset != "v1" || r[0].Weight != tc.v1 || r[1].Destination.Subset != "v2" || r[1].Weight != tc.v2 {
			t.Errorf("VirtualService(%d, %d) routes = %+v", tc.v1, tc.v2, r)
		}
		if vs.Metadata.Namespace != Namespace || vs.Spec.Hosts[0] != ServiceHost || r[1].Destination.Host != ServiceHost {
			t.Errorf("VirtualService(%d, %d) names: %+v", tc.v1, tc.v2, vs)
		}
	}
}
