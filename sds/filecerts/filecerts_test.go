package filecerts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/sds/filecerts"
	"github.com/meshlite/meshlite/sds/internal/testcerts"
	"github.com/meshlite/meshlite/sds/secret"
)

// atomicWriter mimics the kubelet's AtomicWriter for Secret volumes: files
// live in a timestamped directory, `..data` points at it, the visible names
// are symlinks through `..data`, and an update swaps `..data` with a rename
// and then deletes the previous directory.
type atomicWriter struct {
	t   *testing.T
	dir string
	gen int
}

func (a *atomicWriter) write(files map[string][]byte) {
	a.t.Helper()
	a.gen++
	ts := fmt.Sprintf("..2026_11_22_00_00_%02d.%d", a.gen, a.gen)
	must(a.t, os.Mkdir(filepath.Join(a.dir, ts), 0o755))
	for name, data := range files {
		must(a.t, os.WriteFile(filepath.Join(a.dir, ts, name), data, 0o644))
	}
	old, _ := os.Readlink(filepath.Join(a.dir, "..data"))
	must(a.t, os.Symlink(ts, filepath.Join(a.dir, "..data_tmp")))
	must(a.t, os.Rename(filepath.Join(a.dir, "..data_tmp"), filepath.Join(a.dir, "..data")))
	for name := range files {
		link := filepath.Join(a.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			must(a.t, os.Symlink(filepath.Join("..data", name), link))
		}
	}
	if old != "" {
		must(a.t, os.RemoveAll(filepath.Join(a.dir, old)))
	}
}

func files(p, root testcerts.Pair) map[string][]byte {
	return map[string][]byte{filecerts.CertChainFile: p.CertPEM, filecerts.KeyFile: p.KeyPEM, filecerts.RootFile: root.CertPEM}
}

func start(t *testing.T, dir string) *filecerts.Source {
	t.Helper()
	o := filecerts.InDir(dir)
	o.Poll = -1 // prove that events alone are enough
	src, err := filecerts.New(o)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); must(t, src.Run(ctx)) }()
	t.Cleanup(func() { cancel(); <-done })
	return src
}

func TestSurvivesRepeatedSymlinkSwaps(t *testing.T) {
	dir := t.TempDir()
	aw := &atomicWriter{t: t, dir: dir}
	root := testcerts.SelfSigned(t, "root")
	first := testcerts.SelfSigned(t, "gen-0")
	aw.write(files(first, root))
	src := start(t, dir)
	if w := src.Workload(); w == nil || w.Leaf.Subject.CommonName != "gen-0" {
		t.Fatalf("initial load: %+v", w)
	}
	defCh, cancel := src.Subscribe(secret.ResourceDefault)
	defer cancel()

	for i := 1; i <= 7; i++ {
		cn := fmt.Sprintf("gen-%d", i)
		aw.write(files(testcerts.SelfSigned(t, cn), root))
		waitFor(t, "swap "+cn, func() bool { return src.Workload().Leaf.Subject.CommonName == cn })
	}
	select {
	case <-defCh:
	default:
		t.Error("subscribers of default were not signalled")
	}
	if st := src.Status(); st.LastError != nil {
		t.Errorf("status after consistent swaps: %v", st.LastError)
	}
}

func TestRootSwapIsPushedAsROOTCA(t *testing.T) {
	dir := t.TempDir()
	aw := &atomicWriter{t: t, dir: dir}
	pair := testcerts.SelfSigned(t, "w")
	aw.write(files(pair, testcerts.SelfSigned(t, "root-1")))
	src := start(t, dir)
	rootCh, cancel := src.Subscribe(secret.ResourceRoot)
	defer cancel()
	defCh, cancelDef := src.Subscribe(secret.ResourceDefault)
	defer cancelDef()

	aw.write(files(pair, testcerts.SelfSigned(t, "root-2")))
	select {
	case <-rootCh:
	case <-time.After(10 * time.Second):
		t.Fatal("root change not signalled")
	}
	if cn := src.Bundle().Roots[0].Subject.CommonName; cn != "root-2" {
		t.Errorf("bundle root = %s, want root-2", cn)
	}
	select {
	case <-defCh:
		t.Error("an unchanged key pair was re-published")
	default:
	}
}

func TestMismatchedPairIsIgnoredUntilConsistent(t *testing.T) {
	dir := t.TempDir()
	aw := &atomicWriter{t: t, dir: dir}
	root := testcerts.SelfSigned(t, "root")
	good := testcerts.SelfSigned(t, "good")
	aw.write(files(good, root))
	src := start(t, dir)

	a, b := testcerts.SelfSigned(t, "a"), testcerts.SelfSigned(t, "b")
	aw.write(map[string][]byte{filecerts.CertChainFile: a.CertPEM, filecerts.KeyFile: b.KeyPEM, filecerts.RootFile: root.CertPEM})
	waitFor(t, "the mismatch to be noticed", func() bool { return src.Status().LastError != nil })
	if !strings.Contains(src.Status().LastError.Error(), "does not match") {
		t.Errorf("error = %v, want a key/cert mismatch", src.Status().LastError)
	}
	if cn := src.Workload().Leaf.Subject.CommonName; cn != "good" {
		t.Errorf("serving %s during a mismatch, want the previous pair", cn)
	}
	aw.write(files(a, root))
	waitFor(t, "the consistent pair", func() bool { return src.Workload().Leaf.Subject.CommonName == "a" })
	if err := src.Status().LastError; err != nil {
		t.Errorf("error not cleared: %v", err)
	}
}

// Plain files written in place (no atomic swap): the key lands first, so for a
// moment the pair is inconsistent, and a truncated chain is unreadable.
func TestHalfWrittenPlainFiles(t *testing.T) {
	dir := t.TempDir()
	root := testcerts.SelfSigned(t, "root")
	old := testcerts.SelfSigned(t, "old")
	must(t, os.WriteFile(filepath.Join(dir, filecerts.RootFile), root.CertPEM, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, filecerts.CertChainFile), old.CertPEM, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, filecerts.KeyFile), old.KeyPEM, 0o600))
	src := start(t, dir)

	next := testcerts.SelfSigned(t, "next")
	must(t, os.WriteFile(filepath.Join(dir, filecerts.KeyFile), next.KeyPEM, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, filecerts.CertChainFile), next.CertPEM[:len(next.CertPEM)/2], 0o644))
	waitFor(t, "the broken state to be noticed", func() bool { return src.Status().LastError != nil })
	if cn := src.Workload().Leaf.Subject.CommonName; cn != "old" {
		t.Errorf("serving %s mid-write, want old", cn)
	}
	must(t, os.WriteFile(filepath.Join(dir, filecerts.CertChainFile), next.CertPEM, 0o644))
	waitFor(t, "the completed pair", func() bool { return src.Workload().Leaf.Subject.CommonName == "next" })
}

func TestFindDir(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(b, filecerts.CertChainFile), nil, 0o644))
	if d, err := filecerts.FindDir(a, b); err != nil || d != b {
		t.Errorf("FindDir = %q, %v; want %q", d, err, b)
	}
	if _, err := filecerts.FindDir(a); err == nil || !strings.Contains(err.Error(), "FILE_MOUNTED_CERTS") {
		t.Errorf("err = %v, want an actionable message", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
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
