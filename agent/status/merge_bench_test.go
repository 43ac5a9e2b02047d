package status

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/prometheus/common/expfmt"
)

// envoyLike builds an Envoy-sized exposition: families of counters and
// histograms with a cluster label, about n series.
func envoyLike(n int) []byte {
	var b bytes.Buffer
	for f := 0; f < n/100; f++ {
		fmt.Fprintf(&b, "# TYPE envoy_cluster_metric_%d counter\n", f)
		for c := 0; c < 100; c++ {
			fmt.Fprintf(&b, "envoy_cluster_metric_%d{cluster_name=\"outbound|80||svc-%d.default.svc.cluster.local\"} %d\n", f, c, c*f)
		}
	}
	return b.Bytes()
}

// BenchmarkMergeScrape measures one merged scrape of an Envoy with ~50k
// series plus a small OpenMetrics application: parse, merge and encode.
func BenchmarkMergeScrape(b *testing.B) {
	envoy := envoyLike(50_000)
	app := []byte("# TYPE jobs counter\njobs_total 3\njobs_created 1.6e9\n# EOF\n")
	b.SetBytes(int64(len(envoy) + len(app)))
	b.ReportAllocs()
	var out bytes.Buffer
	for b.Loop() {
		out.Reset()
		mw := newMergeWriter(&out, expfmt.FmtText)
		mw.exposition(sourceEnvoy, envoy, "text/plain")
		mw.exposition(sourceApp, app, "application/openmetrics-text")
		if err := mw.close(); err != nil {
			b.Fatal(err)
		}
	}
}
