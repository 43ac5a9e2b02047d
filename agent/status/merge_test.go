package status

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// mustParse asserts what Prometheus cares about: the merged text parses.
func mustParse(t *testing.T, text []byte) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := p.TextToMetricFamilies(bytes.NewReader(text)); err != nil {
		t.Fatalf("merged output does not parse: %v\n%s", err, text)
	}
}

// TestMergeGolden merges testdata/merge/<case>/{agent,envoy,application}.{txt,om}
// in that order and compares with <case>/want.golden.
func TestMergeGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/merge/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var out bytes.Buffer
			mw := newMergeWriter(&out, expfmt.FmtText)
			for _, src := range []string{sourceAgent, sourceEnvoy, sourceApp} {
				for _, ext := range []string{".txt", ".om"} {
					ct := "text/plain; version=0.0.4"
					if ext == ".om" {
						ct = "application/openmetrics-text; version=1.0.0"
					}
					b, err := os.ReadFile(filepath.Join(dir, src+ext))
					if os.IsNotExist(err) {
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					mw.exposition(src, b, ct)
				}
			}
			if err := mw.close(); err != nil {
				t.Fatal(err)
			}
			mustParse(t, out.Bytes())
			var keys []string
			for k, n := range mw.dropped {
				if n > 0 {
					keys = append(keys, fmt.Sprintf("# dropped %s/%s: %d\n", k[0], k[1], n))
				}
			}
			sort.Strings(keys)
			got := strings.Join(keys, "") + out.String()
			golden := filepath.Join(dir, "want.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestMergeGolden -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("merge of %s differs from %s (rerun with -update if intended):\n--- got\n%s\n--- want\n%s", dir, golden, got, want)
			}
		})
	}
}

func TestMergeOpenMetricsOutput(t *testing.T) {
	var out bytes.Buffer
	mw := newMergeWriter(&out, expfmt.FmtOpenMetrics_1_0_0)
	mw.exposition(sourceEnvoy, []byte("# TYPE a_total counter\na_total 1\n"), "text/plain")
	if err := mw.close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "# EOF\n") || strings.Count(out.String(), "# EOF") != 1 {
		t.Errorf("OpenMetrics output must end with exactly one # EOF:\n%s", out.String())
	}
}

func TestCapBody(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		maxBytes int64
		maxLines int
		want     string
		reason   string
	}{
		{"under caps", "a 1\nb 2\n", 100, 10, "a 1\nb 2\n", ""},
		{"byte cap cuts at a line boundary", "a 1\nb 2\nc 3\n", 10, 10, "a 1\nb 2\n", dropBytes},
		{"byte cap inside the first line drops it", "abcdef 1\n", 4, 10, "", dropBytes},
		{"line cap", "a 1\nb 2\nc 3\n", 100, 2, "a 1\nb 2\n", dropLines},
		{"exactly at the line cap", "a 1\nb 2\n", 100, 2, "a 1\nb 2\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := capBody([]byte(tt.in), tt.maxBytes, tt.maxLines)
			if string(got) != tt.want || reason != tt.reason {
				t.Errorf("capBody = %q, %q; want %q, %q", got, reason, tt.want, tt.reason)
			}
		})
	}
}
