package server_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/sds/internal/testcerts"
	"github.com/meshlite/meshlite/sds/internal/testenvoy"
	"github.com/meshlite/meshlite/sds/secret"
	"github.com/meshlite/meshlite/sds/server"
)

// selfSigned returns a fresh key pair whose CN tells test cases apart.
func selfSigned(t testing.TB, cn string) (*secret.Workload, *secret.Bundle) {
	t.Helper()
	p := testcerts.SelfSigned(t, cn)
	w, err := secret.NewWorkload(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return w, secret.NewBundle(w.Leaf)
}

// startServer runs an SDS server on a socket in a temp dir.
func startServer(t *testing.T, src secret.Source) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "workload-spiffe-uds", "socket")
	run(t, sock, src)
	return sock
}

func run(t *testing.T, sock string, src secret.Source) {
	t.Helper()
	srv, err := server.New(server.Options{SocketPath: sock, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the socket", func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func TestServesDefaultAndROOTCAAndPushesOnlyWatchers(t *testing.T) {
	hub := &secret.Hub{}
	w1, b1 := selfSigned(t, "one")
	hub.SetWorkload(w1)
	hub.SetBundle(b1)
	env := testenvoy.Dial(t, startServer(t, hub))
	def, root := env.Open(secret.ResourceDefault), env.Open(secret.ResourceRoot)

	got := def.Next().GetTlsCertificate()
	if string(got.GetCertificateChain().GetInlineBytes()) != string(w1.CertChainPEM) || string(got.GetPrivateKey().GetInlineBytes()) != string(w1.KeyPEM) {
		t.Error("default does not carry the workload chain and key")
	}
	if ca := root.Next().GetValidationContext().GetTrustedCa().GetInlineBytes(); string(ca) != string(b1.PEM) {
		t.Error("ROOTCA does not carry the trust bundle")
	}
	waitFor(t, "the ACK of default to mark the cert served", func() bool { return hub.Status().Delivered })
	if via := hub.Status().DeliveredVia; via != "sds" {
		t.Errorf("delivered via %q, want sds", via)
	}

	// A root change reaches only the ROOTCA watcher.
	_, b2 := selfSigned(t, "two")
	hub.SetBundle(b2)
	if ca := root.Next().GetValidationContext().GetTrustedCa().GetInlineBytes(); string(ca) != string(b2.PEM) {
		t.Error("ROOTCA push does not carry the new root")
	}
	// The next thing the default stream sees must be the new workload: had
	// the root change pushed it, it would see the old one first.
	w2, _ := selfSigned(t, "two")
	hub.SetWorkload(w2)
	if chain := def.Next().GetTlsCertificate().GetCertificateChain().GetInlineBytes(); string(chain) != string(w2.CertChainPEM) {
		t.Error("default stream got a push that was not the new certificate (a root change leaked to it?)")
	}
	// Likewise the ROOTCA stream's next push must be a later root change.
	_, b3 := selfSigned(t, "three")
	hub.SetBundle(b3)
	if ca := root.Next().GetValidationContext().GetTrustedCa().GetInlineBytes(); string(ca) != string(b3.PEM) {
		t.Error("ROOTCA stream was pushed on a workload change")
	}
}

func TestFirstRequestWaitsForTheCertificate(t *testing.T) {
	hub := &secret.Hub{}
	def := testenvoy.Dial(t, startServer(t, hub)).Open(secret.ResourceDefault)
	select {
	case r := <-def.Msgs:
		t.Fatalf("got a response before any certificate existed: %v", r)
	case <-time.After(50 * time.Millisecond): // a window for a wrong empty answer, not a sync
	}
	w, _ := selfSigned(t, "late")
	hub.SetWorkload(w)
	if chain := def.Next().GetTlsCertificate().GetCertificateChain().GetInlineBytes(); string(chain) != string(w.CertChainPEM) {
		t.Error("the first push is not the certificate")
	}
}

func TestNACKDoesNotMarkServed(t *testing.T) {
	hub := &secret.Hub{}
	w, _ := selfSigned(t, "x")
	hub.SetWorkload(w)
	def := testenvoy.Dial(t, startServer(t, hub)).Open(secret.ResourceDefault)
	def.SendNACK(def.Recv().Nonce, "bad key")
	// The server handles the NACK before it can watch for (and send) the next
	// push, so once that push arrives the NACK's effect is visible.
	w2, _ := selfSigned(t, "y")
	hub.SetWorkload(w2)
	r2 := def.Recv()
	if hub.Status().Delivered {
		t.Fatal("a NACK marked the certificate served")
	}
	def.Send(r2.VersionInfo, r2.Nonce)
	waitFor(t, "the ACK", func() bool { return hub.Status().Delivered })
}

func TestSocketModeAndStaleSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "uds")
	must(t, os.MkdirAll(dir, 0o755))
	sock := filepath.Join(dir, "socket")
	// A socket left by a crashed agent: bound once, listener gone.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	must(t, err)
	l.SetUnlinkOnClose(false)
	l.Close()

	hub := &secret.Hub{}
	w, _ := selfSigned(t, "x")
	hub.SetWorkload(w)
	srv, _ := server.New(server.Options{SocketPath: sock, Source: hub})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	waitFor(t, "the replaced socket to serve", func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	fi, err := os.Stat(sock)
	must(t, err)
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode = %v, want a 0600 socket", fi.Mode())
	}
	testenvoy.Dial(t, sock).Open(secret.ResourceDefault).Next()

	// A second agent must not steal the live socket.
	other, _ := server.New(server.Options{SocketPath: sock, Source: hub})
	err = other.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "in use by another running process") {
		t.Errorf("second server: err = %v, want a refusal", err)
	}
	cancel()
	must(t, <-errc)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket not removed on shutdown: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("leftovers in the socket directory: %v", ents)
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
