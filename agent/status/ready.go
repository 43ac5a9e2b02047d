package status

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Check is one readiness condition. Check returns nil when it holds, or an
// error saying what is missing.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// EnvoyAdmin is what readiness needs from Envoy's admin API.
type EnvoyAdmin interface {
	// ServerState returns Envoy's server.state (e.g. "LIVE", "PRE_INITIALIZING").
	ServerState(ctx context.Context) (string, error)
	// ConfigReceived reports whether Envoy has received its first CDS and LDS.
	ConfigReceived(ctx context.Context) (cds, lds bool, err error)
}

// EnvoyAdminFunc adapts a single readiness read of Envoy's admin (state
// and first-CDS/LDS flags in one call, as agent/envoy's Admin.Readiness
// does) to EnvoyAdmin.
type EnvoyAdminFunc func(ctx context.Context) (state string, cds, lds bool, err error)

// ServerState implements EnvoyAdmin.
func (f EnvoyAdminFunc) ServerState(ctx context.Context) (string, error) {
	st, _, _, err := f(ctx)
	return st, err
}

// ConfigReceived implements EnvoyAdmin.
func (f EnvoyAdminFunc) ConfigReceived(ctx context.Context) (bool, bool, error) {
	_, cds, lds, err := f(ctx)
	return cds, lds, err
}

// EnvoyLive holds when Envoy's admin reports server.state LIVE.
func EnvoyLive(a EnvoyAdmin) Check {
	return Check{Name: "envoy-live", Check: func(ctx context.Context) error {
		st, err := a.ServerState(ctx)
		if err != nil {
			return fmt.Errorf("envoy admin unreachable: %w", err)
		}
		if st != "LIVE" {
			return fmt.Errorf("envoy server.state is %s, not LIVE", st)
		}
		return nil
	}}
}

// EnvoyConfigReceived holds once Envoy got its first CDS and LDS.
func EnvoyConfigReceived(a EnvoyAdmin) Check {
	return Check{Name: "envoy-config", Check: func(ctx context.Context) error {
		cds, lds, err := a.ConfigReceived(ctx)
		if err != nil {
			return fmt.Errorf("envoy admin unreachable: %w", err)
		}
		var missing []string
		if !cds {
			missing = append(missing, "CDS")
		}
		if !lds {
			missing = append(missing, "LDS")
		}
		if len(missing) > 0 {
			return fmt.Errorf("envoy has not received its first %s from the control plane", strings.Join(missing, " and "))
		}
		return nil
	}}
}

// WorkloadCert holds once the workload certificate has been served over
// SDS (sidecar) or written to OUTPUT_CERTS (proxyless).
func WorkloadCert(ready func() bool, proxyless bool) Check {
	return Check{Name: "workload-cert", Check: func(context.Context) error {
		if ready() {
			return nil
		}
		if proxyless {
			return fmt.Errorf("workload certificate not yet written to the output directory")
		}
		return fmt.Errorf("workload certificate not yet served to envoy over SDS")
	}}
}

// Condition wraps any readiness function whose error already says what is
// missing (for example the secret cache's Ready).
func Condition(name string, f func() error) Check {
	return Check{Name: name, Check: func(context.Context) error { return f() }}
}

// Healther is the xDS proxy's health.
type Healther interface{ Health() error }

// XDSProxy holds unless the control plane permanently rejects the agent.
func XDSProxy(h Healther) Check {
	return Check{Name: "xds-proxy", Check: func(context.Context) error { return h.Health() }}
}

const checkTimeout = 2 * time.Second

// handleReady answers 200 only when every condition holds; otherwise 503
// with one line per missing condition so "kubectl describe pod" says why.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.opts.Draining != nil && s.opts.Draining() {
		http.Error(w, "not ready: draining", http.StatusServiceUnavailable)
		return
	}
	var missing []string
	for _, c := range s.opts.Ready {
		ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
		err := c.Check(ctx)
		cancel()
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s: %v", c.Name, err))
		}
	}
	if len(missing) > 0 {
		s.log.Debug("not ready", "missing", missing)
		http.Error(w, "not ready:\n"+strings.Join(missing, "\n"), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}
