package iptables

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"github.com/meshlite/meshlite/test/netns"
)

// BenchmarkApply measures a whole Install (detection, one save, one restore
// per changed table, verification, routes) into a fresh namespace, per plan
// and backend, and reports the rule count. Namespace setup is not timed.
func BenchmarkApply(b *testing.B) {
	netns.RequireRoot(b, "iptables-nft-restore", "iptables-legacy-restore", "ip6tables-nft-restore")
	cases := []struct {
		name   string
		mutate func(*CaptureConfig)
	}{
		{"redirect", func(*CaptureConfig) {}},
		{"tproxy", func(c *CaptureConfig) { c.Mode = ModeTProxy }},
		{"dual-stack", func(c *CaptureConfig) { c.DualStack = true }},
	}
	quiet := WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, be := range []Backend{"", BackendLegacy} {
		label := "auto"
		if be != "" {
			label = string(be)
		}
		for _, tc := range cases {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			p, err := Build(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(label+"/"+tc.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					ns := netns.New(b)
					b.StartTimer()
					err := ns.Do(func() error {
						_, err := Install(context.Background(), cfg, quiet, WithBackend(be))
						return err
					})
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					if err := ns.Close(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(p.RuleCount()), "rules")
			})
		}
	}
}

// BenchmarkRerun measures the idempotent no-op path: a second Install with
// the same config, which reads the state and writes nothing.
func BenchmarkRerun(b *testing.B) {
	netns.RequireRoot(b, "iptables-nft-restore")
	ns := netns.New(b)
	quiet := WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	cfg := DefaultConfig()
	if err := ns.Do(func() error { _, err := Install(context.Background(), cfg, quiet); return err }); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ns.Do(func() error { _, err := Install(context.Background(), cfg, quiet); return err }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareRestore is the yardstick: one iptables-nft-restore --noflush
// of the default plan into a fresh namespace, nothing else.
func BenchmarkBareRestore(b *testing.B) {
	netns.RequireRoot(b, "iptables-nft-restore")
	p, err := Build(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	input := RenderTable(p.Families[0].Tables[0])
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ns := netns.New(b)
		b.StartTimer()
		err := ns.Do(func() error {
			cmd := exec.Command("iptables-nft-restore", "--noflush")
			cmd.Stdin = strings.NewReader(input)
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if err := ns.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(p.RuleCount()), "rules")
}
