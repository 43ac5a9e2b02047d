package status

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshlite/meshlite/agent/probes"
)

// Kubelet semantics the rewritten probes keep.
const (
	// maxProbeBody is how much of the application's answer kubelet reads
	// (and we relay).
	maxProbeBody = 10 << 10
	// maxProbeRedirects matches kubelet (and net/http's default).
	maxProbeRedirects = 10
	// kubeProbeUA is sent when the kubelet's own User-Agent is not known.
	kubeProbeUA = "kube-probe/1.31"
	// defaultProbeTimeout is Kubernetes' timeoutSeconds default.
	defaultProbeTimeout = time.Second
)

// appProbe is agent/probes' type, shared with the config that validates it.
type appProbe = probes.Probe

// prober runs one rewritten probe.
type prober struct {
	path    string
	probe   appProbe
	host    string
	timeout time.Duration
}

func parseAppProbers(raw, defaultHost string) (map[string]*prober, error) {
	m, err := probes.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("ISTIO_KUBE_APP_PROBERS: %w", err)
	}
	out := make(map[string]*prober, len(m))
	for path, pr := range m {
		host := defaultHost
		switch {
		case pr.HTTPGet != nil && pr.HTTPGet.Host != "":
			host = pr.HTTPGet.Host
		case pr.TCPSocket != nil && pr.TCPSocket.Host != "":
			host = pr.TCPSocket.Host
		}
		timeout := defaultProbeTimeout
		if pr.TimeoutSeconds > 0 {
			timeout = time.Duration(pr.TimeoutSeconds) * time.Second
		}
		out[path] = &prober{path: path, probe: pr, host: host, timeout: timeout}
	}
	return out, nil
}

// probeTransport never reuses connections (kubelet probes do not either,
// so a wedged keep-alive connection cannot mask a dead app) and skips
// certificate verification for HTTPS, as kubelet does.
var probeTransport = &http.Transport{
	DisableKeepAlives: true,
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet semantics
	Proxy:             nil,
}

// probeClient follows redirects like kubelet: same-host redirects are
// followed (up to 10); a redirect to another host is not followed and the
// 3xx counts as success.
var probeClient = &http.Client{
	Transport: probeTransport,
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxProbeRedirects {
			return fmt.Errorf("stopped after %d redirects", maxProbeRedirects)
		}
		if req.URL.Hostname() != via[0].URL.Hostname() {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

func (s *Server) handleAppProbe(w http.ResponseWriter, r *http.Request) {
	p, ok := s.probers[r.URL.Path]
	if !ok {
		http.Error(w, fmt.Sprintf("no app probe configured for %s", r.URL.Path), http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	code, body := p.run(ctx, r)
	if code >= 400 {
		s.log.Debug("app probe failed", "path", p.path, "code", code, "body", string(body))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func (p *prober) run(ctx context.Context, in *http.Request) (int, []byte) {
	switch {
	case p.probe.HTTPGet != nil:
		return p.runHTTP(ctx, in)
	case p.probe.TCPSocket != nil:
		addr := net.JoinHostPort(p.host, strconv.Itoa(int(p.probe.TCPSocket.Port)))
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return http.StatusInternalServerError, fmt.Appendf(nil, "tcp probe of %s failed: %v\n", addr, err)
		}
		_ = conn.Close()
		return http.StatusOK, []byte("ok\n")
	default:
		return p.runGRPC(ctx)
	}
}

func (p *prober) runHTTP(ctx context.Context, in *http.Request) (int, []byte) {
	g := p.probe.HTTPGet
	scheme := "http"
	if strings.EqualFold(g.Scheme, "HTTPS") {
		scheme = "https"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(p.host, strconv.Itoa(int(g.Port)))}
	// Path may carry a query string, as in a pod spec.
	target := u.String() + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return http.StatusInternalServerError, fmt.Appendf(nil, "bad probe URL %s: %v\n", target, err)
	}
	ua := in.Header.Get("User-Agent")
	if !strings.HasPrefix(ua, "kube-probe/") {
		ua = kubeProbeUA
	}
	req.Header.Set("User-Agent", ua)
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return http.StatusServiceUnavailable, fmt.Appendf(nil, "http probe of %s timed out after %v\n", target, p.timeout)
		}
		return http.StatusServiceUnavailable, fmt.Appendf(nil, "http probe of %s failed: %v\n", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	// Kubelet: 200 <= code < 400 is success. Relay success as 200 so the
	// kubelet never follows an application redirect against this server.
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return http.StatusOK, body
	}
	return resp.StatusCode, body
}

func (p *prober) runGRPC(ctx context.Context) (int, []byte) {
	g := p.probe.GRPC
	addr := net.JoinHostPort(p.host, strconv.Itoa(g.Port))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(kubeProbeUA))
	if err != nil {
		return http.StatusInternalServerError, fmt.Appendf(nil, "grpc probe of %s: %v\n", addr, err)
	}
	defer conn.Close()
	svc := ""
	if g.Service != nil {
		svc = *g.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		if ctx.Err() != nil {
			return http.StatusServiceUnavailable, fmt.Appendf(nil, "grpc health probe of %s (service %q) timed out after %v\n", addr, svc, p.timeout)
		}
		return http.StatusServiceUnavailable, fmt.Appendf(nil, "grpc health probe of %s (service %q) failed: %v\n", addr, svc, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return http.StatusServiceUnavailable, fmt.Appendf(nil, "grpc service %q at %s is %s\n", svc, addr, resp.GetStatus())
	}
	return http.StatusOK, []byte("SERVING\n")
}
