package meshrun

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StartControlPlane copies the mesh config (on the first start), makes the
// JWT signing key, and starts istiod-lite and waits for its /ready. Calling it
// again after KillControlPlane restarts istiod-lite with the same --caDir, so
// the persisted root, and every certificate already issued, stay valid.
func (m *Mesh) StartControlPlane(ctx context.Context) error {
	cfg := m.ConfigDir()
	if _, err := os.Stat(cfg); os.IsNotExist(err) {
		if err := os.CopyFS(cfg, os.DirFS(m.o.MeshDir)); err != nil {
			return fmt.Errorf("copy %s: %w", m.o.MeshDir, err)
		}
		if err := m.rewriteAddresses(); err != nil {
			return err
		}
	}
	jwtDir := filepath.Join(m.o.Root, "jwt")
	if _, err := os.Stat(filepath.Join(jwtDir, "jwks.json")); os.IsNotExist(err) {
		if _, err := m.run("istiod-lite", "token", "keygen", "--out", jwtDir); err != nil {
			return err
		}
	}
	p, err := m.start("istiod-lite", "", m.o.Root, nil, nil, "istiod-lite", "discovery",
		"--configDir", cfg, "--caDir", m.CADir(),
		"--jwksFile", filepath.Join(jwtDir, "jwks.json"), "--jwtIssuer", JWTIssuer, "--jwtAudience", "istio-ca",
		"--grpcAddr", net.JoinHostPort(m.o.IstiodIP, strconv.Itoa(m.o.GRPCPort)),
		"--secureGRPCAddr", m.SecureAddr(),
		"--httpAddr", "127.0.0.1:"+strconv.Itoa(m.o.HTTPPort))
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.istiod = p
	m.mu.Unlock()
	if err := m.waitOK(ctx, p, "", m.DebugURL()+"/ready", 20*time.Second); err != nil {
		return fmt.Errorf("istiod-lite did not become ready (%w); see %s", err, m.LogPath("istiod-lite"))
	}
	m.logf("istiod-lite ready: xDS+CA on %s, debug on %s/debug/syncz", m.SecureAddr(), m.DebugURL())
	return nil
}

// ControlPlane is the current istiod-lite process (nil before the first start).
func (m *Mesh) ControlPlane() *Proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.istiod
}

// KillControlPlane ends istiod-lite with SIGKILL, as a crash or an OOM kill
// would: no goodbye to connected proxies.
func (m *Mesh) KillControlPlane() {
	if p := m.ControlPlane(); p != nil {
		_ = p.Signal(syscall.SIGKILL)
		<-p.Done()
	}
}

// run runs one of the binaries to completion and returns its trimmed output.
func (m *Mesh) run(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(m.o.BinDir, args[0]), args[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
