package watch

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// The file's directory does not exist at start, then is created, deleted and
// created again (a volume remounted): every appearance of the file is seen.
func TestFollowsDirectoryThatComesAndGoes(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "certs")
	file := filepath.Join(dir, "root-cert.pem")
	var seen atomic.Value
	seen.Store("")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	started := make(chan struct{}, 1)
	go func() {
		defer close(done)
		_ = Run(ctx, Options{Paths: []string{file}}, func() {
			select {
			case started <- struct{}{}:
			default:
			}
			b, _ := os.ReadFile(file)
			seen.Store(string(b))
		})
	}()
	defer func() { cancel(); <-done }()
	<-started

	for _, v := range []string{"one", "two"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for seen.Load() != v {
			if time.Now().After(deadline) {
				t.Fatalf("change to %q not seen (have %q)", v, seen.Load())
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDirsForFollowsSymlinkHops(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "..2026")
	must(t, os.Mkdir(real, 0o755))
	must(t, os.WriteFile(filepath.Join(real, "key.pem"), nil, 0o600))
	must(t, os.Symlink("..2026", filepath.Join(base, "..data")))
	must(t, os.Symlink("..data/key.pem", filepath.Join(base, "key.pem")))
	got := dirsFor([]string{filepath.Join(base, "key.pem")})
	rb, _ := filepath.EvalSymlinks(base)
	rr, _ := filepath.EvalSymlinks(real)
	if len(got) != 2 || !got[rb] || !got[rr] {
		t.Errorf("dirsFor = %v, want %s and %s", got, rb, rr)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
