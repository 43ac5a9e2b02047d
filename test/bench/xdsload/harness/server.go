package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// ServerOptions start one istiod-lite discovery process.
type ServerOptions struct {
	// Bin is the istiod-lite binary; empty builds one into Dir with go build.
	Bin string
	// Dir is a scratch directory the caller owns (log, built binary, CA files).
	Dir string
	// ConfigDir is passed as --configDir.
	ConfigDir string
	// CA, when set, serves --secureGRPCAddr with the CA: key material is
	// generated in Dir/cacerts and bearer tokens are checked against JWKSFile.
	CA       bool
	JWKSFile string
	// LogLevel is --log_output_level (default warn).
	LogLevel string
	// Env is added to the server's environment (for example GOGC=100).
	Env []string
}

// Server is a running istiod-lite.
type Server struct {
	Pid        int
	GRPCAddr   string // plaintext ADS
	SecureAddr string // TLS ADS and the CA; empty without CA
	HTTPAddr   string // debug, pprof, metrics
	CADir      string // root-cert.pem lives here when CA is set
	LogPath    string

	cmd *exec.Cmd
	log *os.File
}

// DefaultBin is $MESHLITE_BIN/istiod-lite when MESHLITE_BIN is set, else "".
func DefaultBin() string {
	if d := os.Getenv("MESHLITE_BIN"); d != "" {
		return filepath.Join(d, "istiod-lite")
	}
	return ""
}

// EnsureBin returns bin, or when it is empty builds istiod-lite into dir.
func EnsureBin(ctx context.Context, bin, dir string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	bin = filepath.Join(dir, "istiod-lite")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/meshlite/meshlite/cmd/istiod-lite")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building istiod-lite (or pass -bin / set MESHLITE_BIN): %w", err)
	}
	return bin, nil
}

// StartServer builds istiod-lite if needed, starts it on free loopback ports
// and waits until it listens. Stop it with Stop.
func StartServer(ctx context.Context, o ServerOptions) (*Server, error) {
	var err error
	if o.Bin, err = EnsureBin(ctx, o.Bin, o.Dir); err != nil {
		return nil, err
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	s := &Server{LogPath: filepath.Join(o.Dir, "istiod-lite.log")}
	if s.GRPCAddr, err = FreeAddr(); err != nil {
		return nil, err
	}
	if s.HTTPAddr, err = FreeAddr(); err != nil {
		return nil, err
	}
	args := []string{"discovery", "--configDir", o.ConfigDir, "--grpcAddr", s.GRPCAddr,
		"--httpAddr", s.HTTPAddr, "--log_output_level", o.LogLevel}
	if o.CA {
		if s.SecureAddr, err = FreeAddr(); err != nil {
			return nil, err
		}
		s.CADir = filepath.Join(o.Dir, "cacerts")
		args = append(args, "--secureGRPCAddr", s.SecureAddr, "--caDir", s.CADir, "--jwksFile", o.JWKSFile)
	} else {
		args = append(args, "--secureGRPCAddr", "")
	}
	if s.log, err = os.Create(s.LogPath); err != nil {
		return nil, err
	}
	s.cmd = exec.CommandContext(ctx, o.Bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.Env = append(os.Environ(), o.Env...)
	if err := s.cmd.Start(); err != nil {
		s.log.Close()
		return nil, fmt.Errorf("starting %s: %w", o.Bin, err)
	}
	s.Pid = s.cmd.Process.Pid
	for _, addr := range []string{s.GRPCAddr, s.SecureAddr} {
		if addr == "" {
			continue
		}
		if err := WaitTCP(ctx, addr, 15*time.Second); err != nil {
			s.Stop()
			return nil, fmt.Errorf("istiod-lite did not listen on %s (log in %s): %w", addr, s.LogPath, err)
		}
	}
	return s, nil
}

// Stop kills the server and waits for it.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.log.Close()
}

// Log returns what the server printed so far.
func (s *Server) Log() []byte {
	b, _ := os.ReadFile(s.LogPath)
	return b
}

// FetchProfile saves a profile istiod-lite serves on its debug port, e.g.
// "/debug/pprof/profile?seconds=5" or "/debug/pprof/heap".
func (s *Server) FetchProfile(ctx context.Context, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.HTTPAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// FreeAddr returns a loopback address nothing listens on right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// WaitTCP polls until addr accepts a connection.
func WaitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
