// Package e2e runs real multi-process scenarios with the built binaries:
// istiod-lite, proxyless pilot-agents and the example gRPC workloads, started
// by test/meshrun exactly as the demo starts them. Each scenario gets its own
// istiod-lite, ports and loopback addresses, so scenarios run in parallel.
//
// Binaries come from $MESHLITE_BIN (the Makefile sets it to ./bin); without it
// they are built into a temp directory first.
package e2e

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlite/meshlite/test/meshrun"
)

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short (the scenarios run the binaries for about 2 minutes)")
		os.Exit(0)
	}
	if binDir = os.Getenv("MESHLITE_BIN"); binDir != "" {
		os.Exit(m.Run())
	}
	dir, err := build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles the binaries into a temp directory (about a minute).
func build() (string, error) {
	dir, err := os.MkdirTemp("", "meshlite-e2e-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/pilot-agent", "./cmd/istiod-lite", "./examples/greeter", "./examples/client", "./examples/demo")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("building the binaries (set MESHLITE_BIN to use prebuilt ones): %w\n%s", err, out)
	}
	return dir, nil
}

func repoRoot() string { return filepath.Join("..", "..") }

// subnet hands each mesh its own 127.<n>.0.0/16 addresses.
var subnet atomic.Int32

// Offset by PID so that two test processes at once rarely share addresses.
func init() { subnet.Store(int32(100 + os.Getpid()%100)) }

// newMesh builds a mesh with the demo's three workloads on addresses and
// ports of its own; the mesh is stopped when the test ends, and every log is
// printed if it failed.
func newMesh(t *testing.T, agentEnv ...string) *meshrun.Mesh {
	t.Helper()
	n := subnet.Add(1)
	ws := meshrun.DefaultWorkloads()
	for i := range ws {
		ws[i].IP = fmt.Sprintf("127.%d.0.%s", n, strings.TrimPrefix(ws[i].MeshIP, "127.0.0."))
		ws[i].StatusPort = freePort(t, ":0")
	}
	root := t.TempDir()
	if os.Getenv("MESHLITE_E2E_KEEP") != "" {
		// Keep every scenario's logs, certificates and config for a post-mortem.
		var err error
		if root, err = os.MkdirTemp("", "meshlite-e2e-"+t.Name()+"-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("MESHLITE_E2E_KEEP: keeping %s", root)
	}
	m, err := meshrun.New(meshrun.Options{
		BinDir: binDir, MeshDir: filepath.Join(repoRoot(), "examples", "mesh"), Root: root,
		SecurePort: freePort(t, "127.0.0.1:0"), GRPCPort: freePort(t, "127.0.0.1:0"), HTTPPort: freePort(t, "127.0.0.1:0"),
		Workloads: ws, AgentEnv: agentEnv, Log: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			dumpLogs(t, filepath.Join(root, "logs"))
		}
	})
	return m
}

func startAll(t *testing.T, m *meshrun.Mesh) *meshrun.Client {
	t.Helper()
	c, err := m.StartAll(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func workload(t *testing.T, m *meshrun.Mesh, name string) meshrun.Workload {
	t.Helper()
	w, ok := m.Workload(name)
	if !ok {
		t.Fatalf("no workload %s", name)
	}
	return w
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// freePort finds a port free now on addr's host; the kernel does not hand
// it out again soon, and scenarios start their servers right away.
func freePort(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func dumpLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if !strings.Contains(sc.Text(), "level=DEBUG") {
				lines = append(lines, sc.Text())
			}
		}
		fh.Close()
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("==== %s (last %d lines)\n%s", filepath.Base(f), len(lines), strings.Join(lines, "\n"))
	}
}

// noFailures fails the test when the client saw any failed RPC.
func noFailures(t *testing.T, r meshrun.Report, when string) {
	t.Helper()
	if r.Failed != 0 {
		t.Errorf("%s: %d of %d RPCs failed (last error: %s)", when, r.Failed, r.Failed+r.OK, r.LastError)
	}
}
