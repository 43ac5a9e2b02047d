package envoy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Admin is a client of Envoy's admin API, for the supervisor's drain and for
// the status server's readiness.
type Admin struct {
	base string
	hc   *http.Client
}

// NewAdmin returns a client for the admin API at addr (host:port).
func NewAdmin(addr string) *Admin {
	return &Admin{base: "http://" + addr, hc: &http.Client{Timeout: 5 * time.Second}}
}

// Address is the admin host:port.
func (a *Admin) Address() string { return strings.TrimPrefix(a.base, "http://") }

// Envoy's server.state gauge values.
const (
	ServerLive            = 0
	ServerDraining        = 1
	ServerPreInitializing = 2
	ServerInitializing    = 3
)

// ServerStateName is Envoy's name for a server.state value.
func ServerStateName(v int64) string {
	switch v {
	case ServerLive:
		return "LIVE"
	case ServerDraining:
		return "DRAINING"
	case ServerPreInitializing:
		return "PRE_INITIALIZING"
	case ServerInitializing:
		return "INITIALIZING"
	}
	return "UNKNOWN(" + strconv.FormatInt(v, 10) + ")"
}

// Readiness is what Envoy's admin says about its startup.
type Readiness struct {
	State       string // LIVE, PRE_INITIALIZING, ...
	CDSReceived bool   // a CDS update was accepted or rejected
	LDSReceived bool   // an LDS update was accepted or rejected
}

// Ready is true once Envoy is LIVE with its first clusters and listeners.
func (r Readiness) Ready() bool { return r.State == "LIVE" && r.CDSReceived && r.LDSReceived }

// Missing says what keeps Envoy from being ready, for a 503 body.
func (r Readiness) Missing() string {
	var m []string
	if r.State != "LIVE" {
		m = append(m, "envoy server.state is "+r.State+", not LIVE")
	}
	if !r.CDSReceived {
		m = append(m, "no CDS update received yet")
	}
	if !r.LDSReceived {
		m = append(m, "no LDS update received yet")
	}
	return strings.Join(m, "; ")
}

const readinessFilter = `^(server\.state|cluster_manager\.cds\.update_(success|rejected)|listener_manager\.lds\.update_(success|rejected))$`

// Readiness reads server.state and the first-xDS counters in one request.
func (a *Admin) Readiness(ctx context.Context) (Readiness, error) {
	stats, err := a.Stats(ctx, false, readinessFilter)
	if err != nil {
		return Readiness{}, err
	}
	st, ok := stats["server.state"]
	if !ok {
		return Readiness{}, fmt.Errorf("envoy admin %s reported no server.state", a.Address())
	}
	return Readiness{
		State:       ServerStateName(st),
		CDSReceived: stats["cluster_manager.cds.update_success"]+stats["cluster_manager.cds.update_rejected"] > 0,
		LDSReceived: stats["listener_manager.lds.update_success"]+stats["listener_manager.lds.update_rejected"] > 0,
	}, nil
}

// Stats returns the integer stats matching filter (an RE2 regex, Envoy's
// syntax). Histograms and non-integer lines are skipped.
func (a *Admin) Stats(ctx context.Context, usedOnly bool, filter string) (map[string]int64, error) {
	q := "filter=" + queryEscape(filter)
	if usedOnly {
		q = "usedonly&" + q
	}
	body, err := a.do(ctx, http.MethodGet, "/stats?"+q)
	if err != nil {
		return nil, err
	}
	return parseStats(body), nil
}

func parseStats(body string) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil {
			continue
		}
		out[name] = n
	}
	return out
}

// DrainListeners starts a graceful drain: inbound listeners only for a
// sidecar, every listener for a gateway.
func (a *Admin) DrainListeners(ctx context.Context, inboundOnly bool) error {
	path := "/drain_listeners?graceful"
	if inboundOnly {
		path = "/drain_listeners?inboundonly&graceful"
	}
	_, err := a.do(ctx, http.MethodPost, path)
	return err
}

// ExcludedListenerPorts are the ports whose connections never hold up
// exit-on-zero-connections: admin, the agent's status port, Envoy's readiness
// and Prometheus listeners. Probes and scrapes keep them busy forever.
var ExcludedListenerPorts = map[int]bool{15000: true, 15020: true, 15021: true, 15090: true}

// ActiveConnections sums downstream_cx_active over the listeners that carry
// workload traffic (see CountActiveConnections).
func (a *Admin) ActiveConnections(ctx context.Context) (int64, error) {
	body, err := a.do(ctx, http.MethodGet, "/stats?usedonly&filter=downstream_cx_active")
	if err != nil {
		return 0, err
	}
	return CountActiveConnections(body), nil
}

// CountActiveConnections sums "listener.<addr>_<port>.downstream_cx_active"
// lines, skipping the admin listener, per-worker duplicates, listeners on
// ExcludedListenerPorts and listeners without an address (internal listeners,
// whose connections come from Envoy itself).
func CountActiveConnections(body string) int64 {
	var total int64
	for name, v := range parseStats(body) {
		key, ok := strings.CutPrefix(name, "listener.")
		if !ok {
			continue
		}
		key, ok = strings.CutSuffix(key, ".downstream_cx_active")
		if !ok || key == "admin" || strings.Contains(key, ".worker_") {
			continue
		}
		i := strings.LastIndexByte(key, '_')
		if i < 0 {
			continue
		}
		port, err := strconv.Atoi(key[i+1:])
		if err != nil || !looksLikeAddress(key[:i]) || ExcludedListenerPorts[port] {
			continue
		}
		total += v
	}
	return total
}

// looksLikeAddress accepts Envoy's stat forms of an IP: "0.0.0.0",
// "10.1.2.3", "[__]", "[fd00__1]".
func looksLikeAddress(s string) bool {
	if s == "" {
		return false
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return true
	}
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}

func (a *Admin) do(ctx context.Context, method, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("envoy admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", fmt.Errorf("envoy admin %s %s: reading response: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("envoy admin %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// queryEscape escapes only what breaks a query string; Envoy's filter regexes
// stay readable in its access log.
func queryEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", "#", "%23", " ", "%20")
	return r.Replace(s)
}
