package output_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlite/meshlite/sds/internal/testcerts"
	"github.com/meshlite/meshlite/sds/output"
	"github.com/meshlite/meshlite/sds/secret"
)

func workload(t *testing.T, cn string) (*secret.Workload, *secret.Bundle) {
	p := testcerts.SelfSigned(t, cn)
	w, err := secret.NewWorkload(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return w, secret.NewBundle(w.Leaf)
}

func TestWritesFilesWithModesAndFollowsChanges(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	hub := &secret.Hub{}
	w1, b1 := workload(t, "one")
	hub.SetWorkload(w1)
	hub.SetBundle(b1)
	wr, err := output.New(output.Options{Dir: dir, Source: hub})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = wr.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFile(t, filepath.Join(dir, output.KeyFile), w1.KeyPEM)
	waitFile(t, filepath.Join(dir, output.CertChainFile), w1.CertChainPEM)
	waitFile(t, filepath.Join(dir, output.RootFile), b1.PEM)
	for name, mode := range map[string]os.FileMode{output.KeyFile: 0o600, output.CertChainFile: 0o644, output.RootFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s mode = %v (%v), want %v", name, fi.Mode().Perm(), err, mode)
		}
	}
	waitFor(t, "delivered", func() bool { return hub.Status().Delivered && hub.Status().DeliveredVia == "files" })

	w2, b2 := workload(t, "two")
	hub.SetWorkload(w2)
	hub.SetBundle(b2)
	waitFile(t, filepath.Join(dir, output.KeyFile), w2.KeyPEM)
	waitFile(t, filepath.Join(dir, output.CertChainFile), w2.CertChainPEM)
	waitFile(t, filepath.Join(dir, output.RootFile), b2.PEM)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("output dir has %d entries, want exactly the 3 files (no temp leftovers)", len(entries))
	}
}

// A reader polling the file while it is rewritten must only ever see a
// complete old or new content.
func TestWriteFileAtomicNeverShowsPartialContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cert-chain.pem")
	a := []byte(strings.Repeat("a", 1<<16))
	b := []byte(strings.Repeat("b", 1<<16))
	if err := output.WriteFileAtomic(path, a, 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data := a
			if i%2 == 0 {
				data = b
			}
			if err := output.WriteFileAtomic(path, data, 0o644); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1<<16 || (got[0] != got[len(got)-1]) {
			t.Fatalf("read a partial or mixed file: len %d", len(got))
		}
	}
	close(stop)
	wg.Wait()
}

func waitFile(t *testing.T, path string, want []byte) {
	t.Helper()
	waitFor(t, path, func() bool {
		got, err := os.ReadFile(path)
		return err == nil && string(got) == string(want)
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
