package envoy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/meshlite/meshlite/bootstrap"
)

// ErrPreflight marks a problem found before launch: Envoy was never started.
var ErrPreflight = errors.New("envoy not started")

// resolveBinary finds the Envoy binary and checks it can be executed.
func resolveBinary(path string) (string, error) {
	if !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("%w: envoy binary %q is not in PATH: install Envoy or set binaryPath in ProxyConfig to its absolute path", ErrPreflight, path)
		}
		path = p
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w: envoy binary %s does not exist: install Envoy there or set binaryPath in ProxyConfig to where it is", ErrPreflight, path)
	case err != nil:
		return "", fmt.Errorf("%w: envoy binary %s cannot be read: %v", ErrPreflight, path, err)
	case st.IsDir():
		return "", fmt.Errorf("%w: envoy binary %s is a directory: set binaryPath to the envoy executable inside it", ErrPreflight, path)
	case st.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("%w: envoy binary %s is not executable (mode %v): run chmod +x %s", ErrPreflight, path, st.Mode().Perm(), path)
	}
	return path, nil
}

// checkBootstrap validates the bootstrap against Envoy's protos and returns
// its admin address (empty if it has no socket address).
func checkBootstrap(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%w: no bootstrap file: the agent must pass the rendered envoy-rev.json", ErrPreflight)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: reading bootstrap %s: %v", ErrPreflight, path, err)
	}
	b, err := bootstrap.Validate(data)
	if err != nil {
		return "", fmt.Errorf("%w: bootstrap %s: %w; fix the template, override or custom config that produced it", ErrPreflight, path, err)
	}
	sa := b.GetAdmin().GetAddress().GetSocketAddress()
	if sa == nil {
		return "", nil
	}
	host := sa.GetAddress()
	switch host {
	case "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, strconv.Itoa(int(sa.GetPortValue()))), nil
}
