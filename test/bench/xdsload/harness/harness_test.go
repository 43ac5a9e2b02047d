package harness

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshlite/meshlite/istiod-lite/config"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{.5, 50 * time.Millisecond}, {.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := Percentile(d, tc.p); got != tc.want {
			t.Errorf("p%.0f = %s, want %s", tc.p*100, got, tc.want)
		}
	}
	if got := Percentile(nil, .99); got != 0 {
		t.Errorf("p99 of nothing = %s, want 0", got)
	}
}

// The generated mesh must pass istiod-lite's validation after every edit,
// or a load run would measure rejected changes.
func TestMeshAndEditsValidate(t *testing.T) {
	dir := t.TempDir()
	if err := WriteMesh(dir, 3); err != nil {
		t.Fatal(err)
	}
	for e := 0; e < 11; e++ {
		if err := WriteVS(dir, e); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, ".greeter-vs.yaml.tmp")); !os.IsNotExist(err) {
			t.Fatalf("edit %d left its temporary file behind", e)
		}
		if _, err := config.Load([]string{dir}, config.Options{}); err != nil {
			t.Fatalf("edit %d: mesh does not validate: %v", e, err)
		}
	}
}

func TestProcFigures(t *testing.T) {
	if r, w, err := IOCalls(os.Getpid()); err != nil || r <= 0 || w < 0 {
		t.Errorf("IOCalls = %d, %d, %v; want read calls counted", r, w, err)
	}
	cur, peak, err := RSS(os.Getpid())
	if err != nil || cur <= 0 || peak < cur {
		t.Fatalf("RSS = %d, %d, %v; want positive with peak >= current", cur, peak, err)
	}
	if _, err := CPUSeconds(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}
