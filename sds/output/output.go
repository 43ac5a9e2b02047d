// Package output writes the workload certificate to files for OUTPUT_CERTS, in
// the layout proxyless gRPC applications (grpc-go's file_watcher certificate
// provider) and Istio's agent use: key.pem, cert-chain.pem and root-cert.pem.
// Each file is replaced atomically so a reader never sees half a file.
package output

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/meshlite/meshlite/sds/secret"
)

// File names written into the output directory.
const (
	KeyFile       = "key.pem"
	CertChainFile = "cert-chain.pem"
	RootFile      = "root-cert.pem"
)

// Options configures a Writer.
type Options struct {
	// Dir is the OUTPUT_CERTS directory; created if missing.
	Dir    string
	Source secret.Source
	Logger *slog.Logger
}

// Writer keeps Dir in sync with a certificate source.
type Writer struct {
	opts Options
	log  *slog.Logger
}

// New validates opts.
func New(opts Options) (*Writer, error) {
	if opts.Dir == "" {
		return nil, errors.New("OUTPUT_CERTS: output directory is empty")
	}
	if opts.Source == nil {
		return nil, errors.New("OUTPUT_CERTS: no certificate source")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Writer{opts: opts, log: opts.Logger.With("scope", "sds")}, nil
}

// Run writes the current files and rewrites them on every change until ctx
// is done.
func (w *Writer) Run(ctx context.Context) error {
	if err := os.MkdirAll(w.opts.Dir, 0o755); err != nil {
		return fmt.Errorf("OUTPUT_CERTS: create %s: %w (set OUTPUT_CERTS to a writable directory)", w.opts.Dir, err)
	}
	defCh, cancelDef := w.opts.Source.Subscribe(secret.ResourceDefault)
	defer cancelDef()
	rootCh, cancelRoot := w.opts.Source.Subscribe(secret.ResourceRoot)
	defer cancelRoot()
	w.writeRoot()
	w.writeWorkload()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-rootCh:
			w.writeRoot()
		case <-defCh:
			w.writeWorkload()
		}
	}
}

func (w *Writer) writeRoot() {
	b := w.opts.Source.Bundle()
	if b == nil {
		return
	}
	if err := WriteFileAtomic(filepath.Join(w.opts.Dir, RootFile), b.PEM, 0o644); err != nil {
		w.log.Error("cannot write root certificate for OUTPUT_CERTS", "err", err)
		return
	}
	w.log.Debug("wrote trust bundle", "dir", w.opts.Dir, "roots", len(b.Roots))
}

func (w *Writer) writeWorkload() {
	wl := w.opts.Source.Workload()
	if wl == nil {
		return
	}
	// Chain before key: a reader catching the moment in between sees a
	// mismatched pair, which grpc-go's file_watcher rejects (keeping the old
	// pair) and retries on its next refresh.
	if err := WriteFileAtomic(filepath.Join(w.opts.Dir, CertChainFile), wl.CertChainPEM, 0o644); err != nil {
		w.log.Error("cannot write certificate chain for OUTPUT_CERTS", "err", err)
		return
	}
	if err := WriteFileAtomic(filepath.Join(w.opts.Dir, KeyFile), wl.KeyPEM, 0o600); err != nil {
		w.log.Error("cannot write private key for OUTPUT_CERTS", "err", err)
		return
	}
	w.opts.Source.MarkDelivered("files")
	w.log.Info("wrote workload certificate", "dir", w.opts.Dir, "expires", wl.NotAfter())
}

// WriteFileAtomic replaces path with data: it writes a temporary file in the
// same directory with the final mode, syncs it and renames it over path, so
// readers see either the old or the new content, never a mix.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; Chmod covers the wider modes
	// and keeps the key from ever existing with more than its final mode.
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
