package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

const testMesh = `apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 7070, targetPort: 7070}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-v1, namespace: demo}
spec:
  address: 127.0.0.11
  labels: {app: greeter, version: v1}
  serviceAccount: greeter
`

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestDiscoveryServes runs the command end to end: config from a directory,
// ADS on --grpcAddr, debug pages on --httpAddr, and a clean stop on cancel
// (what SIGTERM does through signal.NotifyContext).
func TestDiscoveryServes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(testMesh), 0o644); err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := newRootCmd()
	cmd.SetArgs([]string{"discovery", "--configDir", dir, "--grpcAddr", grpcAddr, "--httpAddr", httpAddr, "--secureGRPCAddr", ""})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("discovery exited with %v after cancel, want a clean exit", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("discovery did not stop within 10s of cancel")
		}
	}()

	base := "http://" + httpAddr
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, err := httpGet(base + "/ready")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready not 200 within 10s (last: %d %v)", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body, err := httpGet(base + "/debug/registryz")
	if err != nil || code != 200 || !strings.Contains(body, "greeter.demo.svc.cluster.local") {
		t.Fatalf("/debug/registryz = %d %v %s, want the greeter service", code, err, body)
	}

	// A proxyless client gets its listener over ADS and shows up in syncz and config_dump.
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"GENERATOR": "grpc"})
	const id = "sidecar~127.0.0.21~client.demo~demo.svc.cluster.local"
	if err := stream.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: id, Metadata: md}, TypeUrl: resourcev3.ListenerType,
		ResourceNames: []string{"greeter.demo.svc.cluster.local:7070"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 1 {
		t.Fatalf("LDS returned %d listeners, want greeter.demo.svc.cluster.local:7070", len(resp.GetResources()))
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: resp.GetVersionInfo(),
		ResourceNames: []string{"greeter.demo.svc.cluster.local:7070"}, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, body, _ := httpGet(base + "/debug/syncz")
		var ps []struct {
			ID    string
			Types map[string]struct{ Sent, Acked string }
		}
		_ = json.Unmarshal([]byte(body), &ps)
		if len(ps) == 1 && ps[0].ID == id && ps[0].Types["lds"].Acked == resp.GetVersionInfo() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/debug/syncz never showed the LDS ACK: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body, _ = httpGet(base + "/debug/config_dump?proxyID=" + id)
	if code != 200 || !strings.Contains(body, "outbound|7070||greeter.demo.svc.cluster.local") {
		t.Fatalf("/debug/config_dump = %d %s, want the greeter cluster", code, body)
	}
	code, body, _ = httpGet(base + "/metrics")
	if code != 200 || !strings.Contains(body, "pilot_xds 1") || !strings.Contains(body, "istiod_config_rejections_total") {
		t.Fatalf("/metrics = %d, want pilot_xds 1 and the registry's rejection counter:\n%s", code, body)
	}
}

func TestDiscoveryFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--grpcAddr", "15010"}, "--grpcAddr"},
		{[]string{"--tlsCertFile", "/x.pem"}, "--tlsKeyFile"},
		{[]string{"--debounce", "0s"}, "--debounce"},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			cmd := newRootCmd()
			cmd.SetArgs(append([]string{"discovery", "--configDir", t.TempDir()}, tc.args...))
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// TestDiscoverySIGTERM runs the real command in a child process (this test
// binary re-executed) and checks SIGTERM ends it with status 0.
func TestDiscoverySIGTERM(t *testing.T) {
	if os.Getenv("DISCOVERY_CHILD") == "1" {
		cmd := newRootCmd()
		cmd.SetArgs(strings.Fields(os.Getenv("DISCOVERY_ARGS")))
		if err := cmd.Execute(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(testMesh), 0o644); err != nil {
		t.Fatal(err)
	}
	httpAddr := freeAddr(t)
	child := exec.Command(os.Args[0], "-test.run=^TestDiscoverySIGTERM$")
	child.Env = append(os.Environ(), "DISCOVERY_CHILD=1",
		"DISCOVERY_ARGS=discovery --configDir "+dir+" --grpcAddr "+freeAddr(t)+" --httpAddr "+httpAddr+" --secureGRPCAddr=")
	var stderr strings.Builder
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _, err := httpGet("http://" + httpAddr + "/ready"); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			_ = child.Process.Kill()
			_ = child.Wait()
			t.Fatalf("child never became ready:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- child.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("after SIGTERM: %v, want exit status 0\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		_ = child.Process.Kill()
		t.Fatalf("still running 15s after SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "istiod-lite discovery stopped") {
		t.Errorf("no clean-stop log line:\n%s", stderr.String())
	}
}
