package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitBecomesReady(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz/ready" {
			http.NotFound(w, r)
			return
		}
		if calls.Add(1) < 3 {
			http.Error(w, "envoy not LIVE", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	var out bytes.Buffer
	cmd := newWaitCmd()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--url", srv.URL + "/healthz/ready", "--periodMillis", "5", "--timeoutSeconds", "10"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if calls.Load() != 3 {
		t.Errorf("polled %d times, want 3 (ready on the third)", calls.Load())
	}
	if !strings.Contains(out.String(), "ready") {
		t.Errorf("output %q", out.String())
	}
}

func TestWaitTimesOutWithLastFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no LDS update received yet", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	err := waitReady(context.Background(), srv.Client(), srv.URL, 5*time.Millisecond, 50*time.Millisecond)
	if err == nil {
		t.Fatal("wait succeeded against a server that is never ready")
	}
	for _, w := range []string{"not ready after 50ms", "503", "no LDS update received yet"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestWaitCommandExitCodeOnTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused on every poll
	cmd := newWaitCmd()
	cmd.SetArgs([]string{"--url", "http://" + addr + "/healthz/ready", "--periodMillis", "100", "--timeoutSeconds", "1"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err = cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "not ready after 1s") {
		t.Fatalf("wait = %v", err)
	}
}

func TestWaitRejectsBadFlags(t *testing.T) {
	cmd := newWaitCmd()
	cmd.SetArgs([]string{"--periodMillis", "0"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--periodMillis (0)") {
		t.Fatalf("wait = %v", err)
	}
}

func TestRequestRefusesOtherPorts(t *testing.T) {
	for _, port := range []string{"8080", "22", "15001", "15090"} {
		cmd := newRequestCmd()
		cmd.SetArgs([]string{"GET", "stats", "--debug-port", port})
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), "--debug-port "+port+" is not allowed") || !strings.Contains(err.Error(), "15000, 15004, 15020, 15021") {
			t.Errorf("port %s: %v", port, err)
		}
	}
}

// The request goes to localhost:<port>/<path> with the method and body given;
// the dialer is redirected to a test server because the real ports may be
// in use on this machine.
func TestRequestSendsToLocalPort(t *testing.T) {
	var got struct{ method, path, query, body, host string }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.path, got.query, got.body, got.host = r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.Host
		if r.URL.Path == "/missing" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		io.WriteString(w, "OK\n")
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}}}

	var out bytes.Buffer
	if err := doRequest(context.Background(), client, &out, 15000, "post", "logging?level=debug", "x=1"); err != nil {
		t.Fatal(err)
	}
	if got.method != "POST" || got.path != "/logging" || got.query != "level=debug" || got.body != "x=1" || got.host != "localhost:15000" {
		t.Errorf("request = %+v", got)
	}
	if out.String() != "OK\n" {
		t.Errorf("output %q", out.String())
	}
	out.Reset()
	err := doRequest(context.Background(), client, &out, 15020, "GET", "/missing", "")
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("non-2xx must fail: %v", err)
	}
	if got.host != "localhost:15020" || !strings.Contains(out.String(), "not found") {
		t.Errorf("host %q out %q", got.host, out.String())
	}
}
