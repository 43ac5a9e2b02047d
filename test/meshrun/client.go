package meshrun

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// Report is one line of examples/client's output: cumulative counts, the
// last interval's counts per backend, and the identities seen.
type Report struct {
	Time         time.Time        `json:"time"`
	OK           int64            `json:"ok"`
	Failed       int64            `json:"failed"`
	ByBackend    map[string]int64 `json:"byBackend"`
	Window       map[string]int64 `json:"window"`
	WindowFailed int64            `json:"windowFailed"`
	ServerID     string           `json:"serverID"`
	SeenAs       string           `json:"seenAs"`
	LastError    string           `json:"lastError"`
	Final        bool             `json:"final"`
}

// Client is the running client app and its latest report.
type Client struct {
	*Proc
	mu     sync.Mutex
	latest Report
	n      int
	next   chan struct{} // closed at the next report (or at exit)
}

// StartClient starts the client app, which checks that every response comes
// from expectServer.
func (m *Mesh) StartClient(w Workload, expectServer string) (*Client, error) {
	return m.StartClientAs(w.Name, w, expectServer)
}

// StartClientAs starts another client app next to workload w's agent (same
// pod, same certificates), logging under name.
func (m *Mesh) StartClientAs(name string, w Workload, expectServer string) (*Client, error) {
	r, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p, err := m.start(name, w.Name, m.WorkloadDir(w), m.appEnv(w), wr, "client",
		"--rps", strconv.Itoa(m.o.ClientRPS), "--expect-server", expectServer)
	wr.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	c := &Client{Proc: p, next: make(chan struct{})}
	go c.read(r, m.LogPath(name+"-reports"))
	return c, nil
}

func (c *Client) read(r *os.File, copyTo string) {
	defer r.Close()
	out, _ := os.Create(copyTo)
	if out != nil {
		defer out.Close()
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if out != nil {
			fmt.Fprintln(out, sc.Text())
		}
		var rep Report
		if json.Unmarshal(sc.Bytes(), &rep) != nil {
			continue
		}
		c.mu.Lock()
		c.latest, c.n = rep, c.n+1
		close(c.next)
		c.next = make(chan struct{})
		c.mu.Unlock()
	}
	c.mu.Lock()
	close(c.next)
	c.next = nil
	c.mu.Unlock()
}

// Latest returns the newest report, how many have arrived, and a channel
// closed when the next one arrives (nil once the client's output ended).
func (c *Client) Latest() (Report, int, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest, c.n, c.next
}

// WaitFor waits until a report satisfies ok, and returns it.
func (c *Client) WaitFor(ctx context.Context, limit time.Duration, what string, ok func(Report) bool) (Report, error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		rep, n, next := c.Latest()
		if n > 0 && ok(rep) {
			return rep, nil
		}
		if next == nil {
			return rep, fmt.Errorf("client exited before %s; see %s", what, c.LogPath)
		}
		select {
		case <-next:
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-timer.C:
			return rep, fmt.Errorf("no client report with %s within %s; last: %+v", what, limit, rep)
		}
	}
}

// WaitReports waits for n more reports (about n seconds) and returns the last.
func (c *Client) WaitReports(ctx context.Context, n int) (Report, error) {
	_, start, _ := c.Latest()
	return c.WaitFor(ctx, time.Duration(n)*time.Second+10*time.Second, fmt.Sprintf("%d more reports", n),
		func(r Report) bool { _, k, _ := c.Latest(); return k >= start+n })
}
