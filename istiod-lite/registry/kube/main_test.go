package kube

import (
	"os"
	"testing"
)

// istio.io/client-go's fake clientset predates the WatchList protocol and
// never sends its initial-events bookmark, so informers over it would not
// sync. Real API servers support it; only the unit tests turn it off.
func TestMain(m *testing.M) {
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}
