package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"
)

// listenUnix creates the SDS socket at path with mode 0600.
//
// A socket file left by a crashed agent is replaced, but one that still
// accepts connections belongs to a live agent and is refused rather than
// silently stolen. The socket is bound under a temporary name, restricted to
// its owner, and renamed into place so it is never reachable with wider
// permissions (changing the umask instead would race with other goroutines).
func listenUnix(path string, log *slog.Logger) (*net.UnixListener, os.FileInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create SDS socket directory %s: %w", dir, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.IsDir() {
			return nil, nil, fmt.Errorf("SDS socket path %s is a directory; remove it or choose another path", path)
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("SDS socket %s is in use by another running process (another agent in this pod?); stop it first, or remove the socket if you are sure it is stale", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("remove stale SDS socket %s: %w", path, err)
		}
		log.Info("replaced a stale SDS socket", "path", path)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".sds-%d.sock", os.Getpid()))
	_ = os.Remove(tmp)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("listen on SDS socket %s: %w", tmp, err)
	}
	l.SetUnlinkOnClose(false) // Close must not unlink a path it no longer owns
	fail := func(err error) (*net.UnixListener, os.FileInfo, error) {
		_ = l.Close()
		_ = os.Remove(tmp)
		return nil, nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(fmt.Errorf("restrict SDS socket %s to its owner: %w", tmp, err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("move SDS socket into place at %s: %w", path, err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return l, fi, nil
}

// removeIfOurs deletes the socket unless another agent replaced it meanwhile.
func removeIfOurs(path string, ours os.FileInfo) {
	if fi, err := os.Lstat(path); err == nil && os.SameFile(fi, ours) {
		_ = os.Remove(path)
	}
}
