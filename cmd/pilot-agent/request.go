package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func init() { register(newRequestCmd) }

// requestPorts are the local ports `request` may reach, as in Istio: Envoy's
// admin, the debug port, the agent's status port and Envoy's readiness port.
// Anything else would turn the command into a generic local HTTP client.
var requestPorts = []int{15000, 15004, 15020, 15021}

func newRequestCmd() *cobra.Command {
	var port int
	cmd := &cobra.Command{
		Use:   "request METHOD PATH [BODY]",
		Short: "Send an HTTP request to the local Envoy admin or agent port and print the response",
		Example: `  pilot-agent request GET stats/prometheus
  pilot-agent request POST 'logging?level=debug'
  pilot-agent request GET healthz/ready --debug-port 15020`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := ""
			if len(args) == 3 {
				body = args[2]
			}
			client := &http.Client{Timeout: 30 * time.Second}
			return doRequest(cmd.Context(), client, cmd.OutOrStdout(), port, args[0], args[1], body)
		},
	}
	cmd.Flags().IntVar(&port, "debug-port", 15000, "local port to send the request to: one of 15000, 15004, 15020, 15021")
	return cmd
}

func doRequest(ctx context.Context, client *http.Client, out io.Writer, port int, method, path, body string) error {
	if !slices.Contains(requestPorts, port) {
		return fmt.Errorf("--debug-port %d is not allowed: use one of %s (Envoy admin, debug, agent status, readiness)", port, joinInts(requestPorts))
	}
	method = strings.ToUpper(method)
	if ctx == nil {
		ctx = context.Background()
	}
	url := fmt.Sprintf("http://localhost:%d/%s", port, strings.TrimPrefix(path, "/"))
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("building %s %s: %w", method, url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w (is the proxy running?)", method, url, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return fmt.Errorf("reading the response of %s %s: %w", method, url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s returned %s", method, url, resp.Status)
	}
	return nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
