package envoy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestArgs(t *testing.T) {
	two := func() float64 { return 2 }
	for _, tc := range []struct {
		name string
		opts Options
		want []string
	}{
		{
			name: "defaults",
			opts: Options{ConfigPath: "/etc/istio/proxy/envoy-rev.json", CPULimit: two},
			want: []string{"-c", "/etc/istio/proxy/envoy-rev.json", "--drain-time-s", "45", "--drain-strategy", "immediate",
				"--local-address-ip-version", "v4", "--file-flush-interval-msec", "1000", "--disable-hot-restart",
				"--allow-unknown-static-fields", "-l", "warning", "--concurrency", "2"},
		},
		{
			name: "istio log syntax, ipv6, explicit concurrency, extra args",
			opts: Options{ConfigPath: "b.json", LogLevel: "debug,misc:error,upstream:warn", IPv6: true, Concurrency: 4,
				DrainDuration: 1500 * time.Millisecond, ExtraArgs: []string{"--log-format", "%v"}, CPULimit: two},
			want: []string{"-c", "b.json", "--drain-time-s", "2", "--drain-strategy", "immediate",
				"--local-address-ip-version", "v6", "--file-flush-interval-msec", "1000", "--disable-hot-restart",
				"--allow-unknown-static-fields", "-l", "debug", "--component-log-level", "misc:error,upstream:warning",
				"--concurrency", "4", "--log-format", "%v"},
		},
		{
			name: "component levels only",
			opts: Options{ConfigPath: "b.json", LogLevel: "misc:error", CPULimit: func() float64 { return 0.5 }},
			want: []string{"-c", "b.json", "--drain-time-s", "45", "--drain-strategy", "immediate",
				"--local-address-ip-version", "v4", "--file-flush-interval-msec", "1000", "--disable-hot-restart",
				"--allow-unknown-static-fields", "--component-log-level", "misc:error", "--concurrency", "1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Args(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseLogLevelErrors(t *testing.T) {
	for _, in := range []string{"loud", "info,debug", "misc:verbose", ":info"} {
		if _, _, err := ParseLogLevel(in); err == nil {
			t.Errorf("ParseLogLevel(%q) accepted", in)
		} else if !strings.Contains(err.Error(), in) && !strings.Contains(err.Error(), "verbose") && !strings.Contains(err.Error(), "loud") {
			t.Errorf("ParseLogLevel(%q) error does not name the input: %v", in, err)
		}
	}
}

func TestParseCPUMax(t *testing.T) {
	for in, want := range map[string]float64{
		"max 100000\n":    0,
		"200000 100000\n": 2,
		"150000 100000":   1.5,
		"garbage":         0,
		"":                0,
	} {
		if got := ParseCPUMax(in); got != want {
			t.Errorf("ParseCPUMax(%q) = %v, want %v", in, got, want)
		}
	}
	if got := Concurrency(0, 1.5); got != 2 {
		t.Errorf("Concurrency(0, 1.5) = %d, want 2 (rounded up)", got)
	}
	if got := Concurrency(3, 8); got != 3 {
		t.Errorf("configured concurrency must win, got %d", got)
	}
	if got := Concurrency(0, 0); got < 1 {
		t.Errorf("Concurrency with no limit = %d", got)
	}
}

func TestCountActiveConnections(t *testing.T) {
	body := strings.Join([]string{
		"http.admin.downstream_cx_active: 1",
		"listener.admin.downstream_cx_active: 1",
		"listener.0.0.0.0_15006.downstream_cx_active: 2",
		"listener.0.0.0.0_15006.worker_0.downstream_cx_active: 2",
		"listener.0.0.0.0_15001.downstream_cx_active: 1",
		"listener.[__]_8080.downstream_cx_active: 4",
		"listener.0.0.0.0_15090.downstream_cx_active: 7",
		"listener.0.0.0.0_15021.downstream_cx_active: 3",
		"listener.127.0.0.1_15020.downstream_cx_active: 1",
		"listener.127.0.0.1_15000.downstream_cx_active: 1",
		"listener.connect_originate.downstream_cx_active: 9",
		"listener.envoy_internal_tunnel_443.downstream_cx_active: 5",
		"cluster.outbound|80||a.svc.cluster.local.upstream_cx_active: 8",
	}, "\n")
	if got := CountActiveConnections(body); got != 7 {
		t.Errorf("active = %d, want 7 (15006:2 + 15001:1 + [::]:8080:4)", got)
	}
}
