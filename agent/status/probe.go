package status

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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

// appProbe is one entry of ISTIO_KUBE_APP_PROBERS, in the injector's
// format: the container probe as written in the pod spec, with named
// ports already resolved to numbers.
type appProbe struct {
	HTTPGet        *httpGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *tcpSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *grpcAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32            `json:"timeoutSeconds,omitempty"`
}

type httpGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        probePort    `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []httpHeader `json:"httpHeaders,omitempty"`
}

type httpHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type tcpSocketAction struct {
	Port probePort `json:"port"`
	Host string    `json:"host,omitempty"`
}

type grpcAction struct {
	Port    int     `json:"port"`
	Service *string `json:"service,omitempty"`
}

// probePort accepts Kubernetes' IntOrString as a number or numeric string.
type probePort int

func (p *probePort) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*p = probePort(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("port %s is neither a number nor a string", b)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("port %q is a named port; the injector must resolve it to the container port number", s)
	}
	*p = probePort(n)
	return nil
}

// prober runs one rewritten probe.
type prober struct {
	path    string
	probe   appProbe
	host    string
	timeout time.Duration
}

func parseAppProbers(raw, defaultHost string) (map[string]*prober, error) {
	out := map[string]*prober{}
	if strings.TrimSpace(raw) == "" {
		return out, nil
	}
	var m map[string]appProbe
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, fmt.Errorf("ISTIO_KUBE_APP_PROBERS is not valid JSON of the form {\"/app-health/<container>/livez\": {\"httpGet\": {...}}}: %w", err)
	}
	paths := make([]string, 0, len(m))
	for p := range m {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		pr := m[path]
		if !strings.HasPrefix(path, "/app-health/") {
			return nil, fmt.Errorf("ISTIO_KUBE_APP_PROBERS: path %q must start with /app-health/ (e.g. /app-health/<container>/readyz)", path)
		}
		n := 0
		var port int
		host := defaultHost
		if pr.HTTPGet != nil {
			n++
			port = int(pr.HTTPGet.Port)
			if pr.HTTPGet.Host != "" {
				host = pr.HTTPGet.Host
			}
			switch strings.ToUpper(pr.HTTPGet.Scheme) {
			case "", "HTTP", "HTTPS":
			default:
				return nil, fmt.Errorf("ISTIO_KUBE_APP_PROBERS: %s: scheme %q is not HTTP or HTTPS", path, pr.HTTPGet.Scheme)
			}
		}
		if pr.TCPSocket != nil {
			n++
			port = int(pr.TCPSocket.Port)
			if pr.TCPSocket.Host != "" {
				host = pr.TCPSocket.Host
			}
		}
		if pr.GRPC != nil {
			n++
			port = pr.GRPC.Port
		}
		if n != 1 {
			return nil, fmt.Errorf("ISTIO_KUBE_APP_PROBERS: %s must have exactly one of httpGet, tcpSocket or grpc, found %d", path, n)
		}
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("ISTIO_KUBE_APP_PROBERS: %s: port %d is out of range 1-65535", path, port)
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
