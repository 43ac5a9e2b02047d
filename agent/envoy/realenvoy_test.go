package envoy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshlite/meshlite/bootstrap"
)

// TestRealEnvoyLifecycle runs the supervisor against a real Envoy: our
// generated bootstrap must start it, it must become LIVE, and a shutdown
// must drain and stop it. Opt in with ENVOY_BIN=/path/to/envoy, or with
// -tags envoy to use the envoy in PATH.
func TestRealEnvoyLifecycle(t *testing.T) {
	bin := os.Getenv("ENVOY_BIN")
	if bin == "" && realEnvoyRequested {
		bin, _ = exec.LookPath("envoy")
	}
	if bin == "" {
		t.Skip("no real Envoy: set ENVOY_BIN=/path/to/envoy (or build with -tags envoy and put envoy in PATH) to run this test")
	}
	dir := t.TempDir()
	admin := freePort(t)
	data, err := bootstrap.Envoy(bootstrap.Options{
		InstanceIPs:    []string{"127.0.0.1"},
		PodName:        "real-envoy-test",
		Namespace:      "default",
		AdminPort:      admin,
		PrometheusPort: freePort(t),
		ReadinessPort:  freePort(t),
		StatusPort:     freePort(t),
		XDSSocket:      filepath.Join(dir, "XDS"),
		SDSSocket:      filepath.Join(dir, "SDS"),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "envoy-rev.json")
	if err := os.WriteFile(cfg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sup, err := New(Options{
		BinaryPath:               bin,
		ConfigPath:               cfg,
		TerminationDrainDuration: time.Second,
		KillGracePeriod:          5 * time.Second,
		Concurrency:              1,
		LogLevel:                 "warning",
	})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- sup.Run(context.Background()) }()
	defer sup.Quit()

	deadline := time.Now().Add(20 * time.Second)
	for {
		rd, err := sup.Admin().Readiness(context.Background())
		if err == nil && rd.State == "LIVE" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoy never became LIVE: %v %+v", err, rd)
		}
		select {
		case err := <-errc:
			t.Fatalf("envoy exited during startup: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n, err := sup.Admin().ActiveConnections(context.Background()); err != nil {
		t.Fatalf("active connections: %v", err)
	} else {
		t.Logf("active connections on a fresh envoy: %d", n)
	}
	sup.Shutdown()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("envoy did not stop after the drain")
	}
}
