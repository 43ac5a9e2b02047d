// Package filecerts is the certificate source for FILE_MOUNTED_CERTS=true:
// the workload key pair and root are files mounted into the pod (for example
// by cert-manager's CSI driver or a Kubernetes Secret volume) instead of being
// signed by the CA. The files are watched and reloaded across any number of
// Kubernetes `..data` symlink swaps; a half-written or mismatched key/cert pair
// is ignored with a warning until a consistent pair appears.
package filecerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/meshlite/meshlite/sds/internal/watch"
	"github.com/meshlite/meshlite/sds/secret"
)

// File names inside a certificate directory, as Istio mounts them.
const (
	CertChainFile = "cert-chain.pem"
	KeyFile       = "key.pem"
	RootFile      = "root-cert.pem"
)

// Directories Istio looks in, relative to the agent's working directory.
var DefaultDirs = []string{"./etc/certs", "./var/run/secrets/workload-spiffe-credentials"}

// DefaultPoll is the safety-net re-read interval on top of fsnotify.
const DefaultPoll = time.Minute

// Options locates the files.
type Options struct {
	CertChain, Key, Root string
	// Poll re-reads the files periodically in case an event was not delivered
	// (0 means DefaultPoll, negative disables).
	Poll   time.Duration
	Logger *slog.Logger
}

// InDir returns the Options for the standard file names in dir.
func InDir(dir string) Options {
	return Options{
		CertChain: filepath.Join(dir, CertChainFile),
		Key:       filepath.Join(dir, KeyFile),
		Root:      filepath.Join(dir, RootFile),
	}
}

// FindDir returns the first of dirs (DefaultDirs if none are given) that holds
// a certificate chain.
func FindDir(dirs ...string) (string, error) {
	if len(dirs) == 0 {
		dirs = DefaultDirs
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, CertChainFile)); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("FILE_MOUNTED_CERTS=true but none of %v holds %s; mount the workload certificate there (with %s and %s)", dirs, CertChainFile, KeyFile, RootFile)
}

// Source serves file-mounted certificates.
type Source struct {
	secret.Hub
	opts Options
	log  *slog.Logger
}

var _ secret.Source = (*Source)(nil)

// New validates opts and loads the files once. A missing or inconsistent pair
// is not an error here (it may still be being written); Status says so.
func New(opts Options) (*Source, error) {
	if opts.CertChain == "" || opts.Key == "" || opts.Root == "" {
		return nil, errors.New("file-mounted certs: the certificate chain, key and root file paths are all required")
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Source{opts: opts, log: opts.Logger.With("scope", "sds")}
	s.reload()
	return s, nil
}

// Run watches the files until ctx is done.
func (s *Source) Run(ctx context.Context) error {
	poll := max(s.opts.Poll, 0)
	return watch.Run(ctx, watch.Options{
		Paths:  []string{s.opts.CertChain, s.opts.Key, s.opts.Root},
		Poll:   poll,
		Logger: s.log,
	}, s.reload)
}

// reload re-reads all files and publishes what changed and is consistent.
func (s *Source) reload() {
	if b, err := s.readRoots(); err != nil {
		s.log.Warn("ignoring root certificate file until it is readable", "file", s.opts.Root, "err", err)
	} else if s.SetBundle(b) {
		s.log.Info("trust bundle loaded from file", "file", s.opts.Root, "roots", len(b.Roots))
	}

	w, err := s.readPair()
	if err != nil {
		s.log.Warn("ignoring mounted key and certificate until they are consistent; still serving the previous pair",
			"chain", s.opts.CertChain, "key", s.opts.Key, "err", err)
		s.SetError(err, false)
		return
	}
	if s.SetWorkload(w) {
		s.log.Info("workload certificate loaded from file", "chain", s.opts.CertChain, "serial", w.Leaf.SerialNumber.String(), "expires", w.NotAfter())
	}
}

func (s *Source) readPair() (*secret.Workload, error) {
	chain, err := os.ReadFile(s.opts.CertChain)
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(s.opts.Key)
	if err != nil {
		return nil, err
	}
	return secret.NewWorkload(chain, key)
}

func (s *Source) readRoots() (*secret.Bundle, error) {
	data, err := os.ReadFile(s.opts.Root)
	if err != nil {
		return nil, err
	}
	roots, err := secret.ParseCertificates(data)
	if err != nil {
		return nil, err
	}
	return secret.NewBundle(roots...), nil
}
