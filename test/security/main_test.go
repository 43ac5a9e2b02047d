// Package security holds meshlite's multi-process security tests: the CA's
// refusals over real gRPC+TLS with tokens minted by the istiod-lite binary,
// the agent's unix sockets against another UID, and the status server's
// localhost-only endpoints against a caller in another network namespace.
// Tests that need root skip with the reason when run without it.
package security

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// helperEnv makes the test binary act as a small client process instead of
// running tests: the way a different UID gets its own process.
const helperEnv = "MESHLITE_SECURITY_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[len(os.Args)-1]))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// runHelper is the body of the helper process. "dial-unix PATH" reports
// whether PATH can be stat'ed and connected to, one word each, so the parent
// can tell a refused connect from an unreachable path.
func runHelper(mode, arg string) int {
	switch mode {
	case "dial-unix":
		st := "ok"
		if _, err := os.Stat(arg); err != nil {
			st = errWord(err)
		}
		dial := "ok"
		if c, err := net.Dial("unix", arg); err != nil {
			dial = errWord(err)
		} else {
			c.Close()
		}
		fmt.Printf("uid=%d stat=%s dial=%s\n", os.Getuid(), st, dial)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

func errWord(err error) string {
	switch {
	case errors.Is(err, os.ErrPermission):
		return "EACCES"
	case errors.Is(err, os.ErrNotExist):
		return "ENOENT"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

var (
	binOnce sync.Once
	binDir  string // world-readable directory with the binaries and a copy of this test binary
	binErr  error
)

// binaries returns a directory holding pilot-agent, istiod-lite, fake-envoy
// and a copy of this test binary (the helper), all executable by any UID.
// pilot-agent and istiod-lite come from $MESHLITE_BIN when set (the Makefile
// sets it to ./bin), otherwise they are built.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() { binDir, binErr = buildBinaries() })
	if binErr != nil {
		t.Fatalf("preparing binaries: %v", binErr)
	}
	return binDir
}

func buildBinaries() (string, error) {
	dir, err := os.MkdirTemp("", "meshlite-sec-bin")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return dir, err
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	build := func(out, pkg string) error {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
		return nil
	}
	for _, name := range []string{"pilot-agent", "istiod-lite"} {
		if bin := os.Getenv("MESHLITE_BIN"); bin != "" {
			if err := copyFile(filepath.Join(bin, name), filepath.Join(dir, name)); err != nil {
				return dir, fmt.Errorf("$MESHLITE_BIN=%s: %w (run make build, or unset MESHLITE_BIN to build here)", bin, err)
			}
			continue
		}
		if err := build(name, "./cmd/"+name); err != nil {
			return dir, err
		}
	}
	if err := build("fake-envoy", "./agent/envoy/testdata/fake-envoy"); err != nil {
		return dir, err
	}
	self, err := os.Executable()
	if err != nil {
		return dir, err
	}
	return dir, copyFile(self, filepath.Join(dir, "helper"))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// requireRoot skips tests that switch UIDs or create network namespaces.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to %s; run `sudo -E go test ./test/security/` (or make test as root)", why)
	}
}

// worldDir is a short temporary directory (unix socket paths are limited to
// 108 bytes) that any UID may traverse, so that a refusal seen by another UID
// comes from the file it targets, not from a parent directory.
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "msec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// freeTCPPort returns a port that was free on 127.0.0.1 a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
