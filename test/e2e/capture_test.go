package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshlite/meshlite/test/netns"
)

// TestAgentCaptureOnVM: `pilot-agent proxy sidecar --capture` (VM mode)
// installs the same capture istio-iptables would, before anything else, and
// removes it when it exits on SIGTERM. It runs inside a network namespace the
// test creates (`ip netns exec`), so the host's rules are never touched.
func TestAgentCaptureOnVM(t *testing.T) {
	netns.RequireRoot(t, "ip", "iptables-save")
	ns := netns.New(t)
	work := t.TempDir()
	var logs bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", ns.Name, filepath.Join(binDir, "pilot-agent"), "proxy", "sidecar", "--capture")
	cmd.Dir = work
	cmd.Env = append(os.Environ(),
		"POD_NAME=vm-1", "POD_NAMESPACE=vm", "INSTANCE_IP=10.9.9.9", "SERVICE_ACCOUNT=vm-app",
		// No control plane: capture must not wait for one.
		"DISABLE_ENVOY=true", "CA_ADDR=127.0.0.1:1", `PROXY_CONFIG={"discoveryAddress":"127.0.0.1:1"}`)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	}()

	rules := func() string {
		out, _ := ns.Exec(context.Background(), "iptables-save")
		return out
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(rules(), "-j ISTIO_OUTPUT") {
		if time.Now().After(deadline) {
			t.Fatalf("capture not installed in 15 s; iptables-save in the namespace:\n%s", rules())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"-A ISTIO_OUTPUT", "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001", "ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006"} {
		if !strings.Contains(rules(), want) {
			t.Errorf("installed capture lacks %q", want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit within 10 s of SIGTERM")
	}
	for _, save := range []string{"iptables-save", "iptables-legacy-save", "iptables-nft-save"} {
		if _, err := exec.LookPath(save); err != nil {
			continue
		}
		out, _ := ns.Exec(context.Background(), save)
		if strings.Contains(out, "ISTIO") {
			t.Errorf("%s still shows capture after the agent exited:\n%s", save, out)
		}
	}
}
