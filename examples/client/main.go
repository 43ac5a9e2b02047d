// Command client is the demo's caller workload: a proxyless gRPC client that
// dials xds:///greeter.demo.svc.cluster.local:7070 through the agent, sends a
// steady stream of RPCs, checks the server's SPIFFE ID on every response, and
// prints one JSON report line per interval (the demo and the end-to-end tests
// read these lines).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and balancers

	"github.com/meshlite/meshlite/examples/internal/peerid"
)

// Report is one line of the client's output.
type Report struct {
	Time       time.Time        `json:"time"`
	OK         int64            `json:"ok"`
	Failed     int64            `json:"failed"`
	ByBackend  map[string]int64 `json:"byBackend"`
	Window     map[string]int64 `json:"window"`
	WindowFail int64            `json:"windowFailed"`
	ServerID   string           `json:"serverID,omitempty"`
	SeenAs     string           `json:"seenAs,omitempty"`
	LastError  string           `json:"lastError,omitempty"`
	Final      bool             `json:"final,omitempty"`
}

func main() {
	target := flag.String("target", "xds:///greeter.demo.svc.cluster.local:7070", "gRPC target")
	rate := flag.Int("rps", 20, "RPCs per second")
	every := flag.Duration("report-every", time.Second, "report interval")
	duration := flag.Duration("duration", 0, "stop after this long (0: until SIGINT/SIGTERM)")
	expectServer := flag.String("expect-server", "", "if set, count a response as failed unless the server's SPIFFE ID equals this")
	timeout := flag.Duration("timeout", 2*time.Second, "per-RPC deadline")
	flag.Parse()
	if err := run(*target, *rate, *every, *duration, *expectServer, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(target string, rate int, every, duration time.Duration, expectServer string, timeout time.Duration) error {
	if rate <= 0 {
		return fmt.Errorf("--rps must be positive, got %d", rate)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return fmt.Errorf("xDS client credentials: %w", err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("dial %s (is GRPC_XDS_BOOTSTRAP set?): %w", target, err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}

	rep := Report{ByBackend: map[string]int64{}, Window: map[string]int64{}}
	enc := json.NewEncoder(os.Stdout)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	report := time.NewTicker(every)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			rep.Time, rep.Final = time.Now(), true
			return enc.Encode(rep)
		case <-report.C:
			rep.Time = time.Now()
			if err := enc.Encode(rep); err != nil {
				return err
			}
			rep.Window, rep.WindowFail = map[string]int64{}, 0
		case <-tick.C:
			call(ctx, client, timeout, expectServer, &rep)
		}
	}
}

func call(ctx context.Context, c testpb.TestServiceClient, timeout time.Duration, expectServer string, rep *Report) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var p peer.Peer
	resp, err := c.UnaryCall(rctx, &testpb.SimpleRequest{FillServerId: true}, grpc.Peer(&p))
	if err == nil && expectServer != "" {
		if id, perr := peerid.FromPeer(&p); perr != nil {
			err = perr
		} else if id != expectServer {
			err = fmt.Errorf("server identity %s, want %s", id, expectServer)
		} else {
			rep.ServerID = id
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down: not a failure of the mesh
		}
		rep.Failed++
		rep.WindowFail++
		rep.LastError = err.Error()
		return
	}
	rep.OK++
	rep.ByBackend[resp.GetServerId()]++
	rep.Window[resp.GetServerId()]++
	rep.SeenAs = resp.GetUsername()
}
