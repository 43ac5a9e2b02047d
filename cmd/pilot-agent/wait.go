package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshlite/meshlite/cmd/internal/cli"
)

func init() { register(newWaitCmd) }

// exitNotReady is wait's status when the proxy did not become ready in time.
const exitNotReady = 1

func newWaitCmd() *cobra.Command {
	var (
		timeoutSeconds int
		periodMillis   int
		requestMillis  int
		url            string
	)
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Wait until the proxy is ready (for holdApplicationUntilProxyStarts and scripts)",
		Long: `wait polls the readiness URL (by default Envoy's :15021/healthz/ready, which the
agent answers only once Envoy is LIVE with its first clusters, listeners and
certificate) until it returns 200, then exits 0. On timeout it exits 1 with the
last failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeoutSeconds <= 0 || periodMillis <= 0 || requestMillis <= 0 {
				return fmt.Errorf("--timeoutSeconds (%d), --periodMillis (%d) and --requestTimeoutMillis (%d) must be positive",
					timeoutSeconds, periodMillis, requestMillis)
			}
			client := &http.Client{Timeout: time.Duration(requestMillis) * time.Millisecond}
			err := waitReady(cmd.Context(), client, url, time.Duration(periodMillis)*time.Millisecond, time.Duration(timeoutSeconds)*time.Second)
			if err != nil {
				return cli.WithExitCode(exitNotReady, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "proxy is ready")
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&timeoutSeconds, "timeoutSeconds", 60, "give up after this many seconds")
	f.IntVar(&periodMillis, "periodMillis", 500, "poll every this many milliseconds")
	f.IntVar(&requestMillis, "requestTimeoutMillis", 500, "timeout of each readiness request, in milliseconds")
	f.StringVar(&url, "url", "http://localhost:15021/healthz/ready", "readiness URL to poll")
	return cmd
}

// waitReady polls url every period until it answers 200 or timeout passes.
func waitReady(ctx context.Context, client *http.Client, url string, period, timeout time.Duration) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(period)
	defer tick.Stop()
	var last error
	for attempt := 1; ; attempt++ {
		err := probe(ctx, client, url)
		if err == nil {
			return nil
		}
		// A probe cut short by the overall deadline says nothing about the
		// proxy; keep the failure before it.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("proxy not ready after %v (%d attempts on %s); last failure: %v", timeout, attempt, url, last)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("bad --url %q: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, string(body))
	}
	return nil
}
