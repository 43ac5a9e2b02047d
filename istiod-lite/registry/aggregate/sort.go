package aggregate

import (
	"cmp"
	"slices"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

func sortServices(s []*model.Service) {
	slices.SortStableFunc(s, func(a, b *model.Service) int { return cmp.Compare(a.Hostname, b.Hostname) })
}
