package meshrun

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"time"
)

// Network places processes: on the host with loopback addresses, or each
// workload in its own network namespace (see Netns).
type Network interface {
	// Command builds the command that runs bin inside the place named ns
	// ("" is the control plane's place).
	Command(ns, bin string, args ...string) *exec.Cmd
	// DialContext dials addr from inside ns, so that the orchestrator can
	// reach status ports that only exist there.
	DialContext(ctx context.Context, ns, network, addr string) (net.Conn, error)
	// Where is a short human description of ns for "where to look" lines
	// (a shell prefix such as "ip netns exec NAME ", or "").
	Where(ns string) string
}

// Loopback runs everything in the current network namespace; workloads are
// told apart by their 127.0.0.0/8 addresses, all local without setup.
type Loopback struct{}

func (Loopback) Command(_, bin string, args ...string) *exec.Cmd { return exec.Command(bin, args...) }

func (Loopback) DialContext(ctx context.Context, _, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (Loopback) Where(string) string { return "" }

// httpClient returns a client whose connections are made from inside ns.
func httpClient(n Network, ns string) *http.Client {
	return &http.Client{
		Timeout: 3 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return n.DialContext(ctx, ns, network, addr)
			},
		},
	}
}
