// Command fake-envoy is a FAKE Envoy, used only by meshlite's supervision
// tests (agent/envoy). It is not a proxy: it accepts Envoy's command-line
// flags, reads the admin address from the bootstrap given with -c, and serves
// a small imitation of Envoy's admin API there, so the supervisor can be
// tested end to end without an Envoy binary.
//
// Admin endpoints: /ready, /server_info, /stats (usedonly, filter as an RE2
// regex), POST /drain_listeners, POST /quitquitquit. Test-only endpoints:
// POST /fake/close?listener=L&n=N (close N connections on listener L),
// POST /fake/crash?code=N or ?signal=KILL, POST /fake/state?s=LIVE.
//
// Behaviour is chosen by environment variables:
//
//	FAKE_ENVOY_RECORD          append {"args":[...],"env":[...]} per start to this file
//	FAKE_ENVOY_EVENTS          append one line per admin call and signal to this file
//	FAKE_ENVOY_CRASH_AFTER_MS  exit on its own after this many milliseconds
//	FAKE_ENVOY_EXIT_CODE       the crash's exit status (default 1)
//	FAKE_ENVOY_CRASH_SIGNAL    crash by killing itself with this signal (e.g. KILL)
//	FAKE_ENVOY_HANG_ON_SIGTERM ignore SIGTERM and SIGINT (only SIGKILL ends it)
//	FAKE_ENVOY_CONNECTIONS     active connections per listener stat name, e.g.
//	                           "0.0.0.0_15006=2,0.0.0.0_15090=3,admin=1"
//	FAKE_ENVOY_STATE           initial server.state name (default LIVE)
//	FAKE_ENVOY_XDS             "0" to report no CDS/LDS update yet (default received)
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var (
	mu          sync.Mutex
	connections = map[string]int{}
	state       = "LIVE"
	xdsReceived = true
)

var stateValues = map[string]int{"LIVE": 0, "DRAINING": 1, "PRE_INITIALIZING": 2, "INITIALIZING": 3}

func main() {
	fs := flag.NewFlagSet("envoy", flag.ContinueOnError)
	config := fs.String("c", "", "bootstrap file")
	fs.Int("drain-time-s", 600, "")
	fs.String("drain-strategy", "gradual", "")
	fs.String("local-address-ip-version", "v4", "")
	fs.Int("file-flush-interval-msec", 10000, "")
	fs.Bool("disable-hot-restart", false, "")
	fs.Bool("allow-unknown-static-fields", false, "")
	fs.String("l", "info", "")
	fs.String("component-log-level", "", "")
	fs.Int("concurrency", 0, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(1) // as Envoy does on an unknown flag
	}
	record()
	addr, err := adminAddress(*config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-envoy:", err)
		os.Exit(1)
	}
	if v := os.Getenv("FAKE_ENVOY_STATE"); v != "" {
		state = v
	}
	xdsReceived = os.Getenv("FAKE_ENVOY_XDS") != "0"
	for _, kv := range strings.Split(os.Getenv("FAKE_ENVOY_CONNECTIONS"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			connections[k], _ = strconv.Atoi(v)
		}
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigs {
			event("signal " + unix.SignalName(s.(syscall.Signal)))
			if os.Getenv("FAKE_ENVOY_HANG_ON_SIGTERM") == "" {
				os.Exit(0)
			}
		}
	}()
	if ms := os.Getenv("FAKE_ENVOY_CRASH_AFTER_MS"); ms != "" {
		n, _ := strconv.Atoi(ms)
		time.AfterFunc(time.Duration(n)*time.Millisecond, func() {
			code, _ := strconv.Atoi(os.Getenv("FAKE_ENVOY_EXIT_CODE"))
			crash(code, os.Getenv("FAKE_ENVOY_CRASH_SIGNAL"))
		})
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-envoy: admin listen:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "fake-envoy: admin on", ln.Addr())
	if err := http.Serve(ln, admin()); err != nil {
		fmt.Fprintln(os.Stderr, "fake-envoy:", err)
		os.Exit(1)
	}
}

func admin() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if state != "LIVE" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, state)
	})
	mux.HandleFunc("/server_info", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"version": "fake-envoy", "state": state, "command_line_options": map[string]any{"argv": os.Args}})
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		event("stats " + r.URL.RawQuery)
		var re *regexp.Regexp
		if f := r.URL.Query().Get("filter"); f != "" {
			var err error
			if re, err = regexp.Compile(f); err != nil {
				http.Error(w, "Invalid re2 regex", http.StatusBadRequest)
				return
			}
		}
		_, usedOnly := r.URL.Query()["usedonly"]
		for _, line := range stats(usedOnly) {
			name, _, _ := strings.Cut(line, ":")
			if re == nil || re.MatchString(name) {
				fmt.Fprintln(w, line)
			}
		}
	})
	mux.HandleFunc("POST /drain_listeners", func(w http.ResponseWriter, r *http.Request) {
		event("drain_listeners " + r.URL.RawQuery)
		fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("POST /quitquitquit", func(w http.ResponseWriter, r *http.Request) {
		event("quitquitquit")
		fmt.Fprintln(w, "OK")
		go func() { time.Sleep(10 * time.Millisecond); os.Exit(0) }()
	})
	mux.HandleFunc("POST /fake/close", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		mu.Lock()
		connections[r.URL.Query().Get("listener")] -= n
		mu.Unlock()
		fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("POST /fake/state", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		state = r.URL.Query().Get("s")
		mu.Unlock()
		fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("POST /fake/crash", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.Header().Set("Connection", "close")
		fmt.Fprintln(w, "OK")
		w.(http.Flusher).Flush()
		// Let the response reach the client before the process goes away.
		go func() { time.Sleep(20 * time.Millisecond); crash(code, r.URL.Query().Get("signal")) }()
	})
	return mux
}

func stats(usedOnly bool) []string {
	mu.Lock()
	defer mu.Unlock()
	xds := 0
	if xdsReceived {
		xds = 1
	}
	lines := []string{
		fmt.Sprintf("server.state: %d", stateValues[state]),
		fmt.Sprintf("cluster_manager.cds.update_success: %d", xds),
		"cluster_manager.cds.update_rejected: 0",
		fmt.Sprintf("listener_manager.lds.update_success: %d", xds),
		"listener_manager.lds.update_rejected: 0",
		"http.admin.downstream_cx_active: 1",
	}
	names := make([]string, 0, len(connections))
	for k := range connections {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, l := range names {
		// Envoy also reports each listener per worker; a supervisor that
		// summed those too would count every connection twice.
		lines = append(lines,
			fmt.Sprintf("listener.%s.downstream_cx_active: %d", l, connections[l]),
			fmt.Sprintf("listener.%s.worker_0.downstream_cx_active: %d", l, connections[l]))
	}
	_ = usedOnly // every fake stat counts as used
	return lines
}

func crash(code int, sig string) {
	event(fmt.Sprintf("crash code=%d signal=%s", code, sig))
	if sig != "" {
		s := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(sig), "SIG"))
		if s != 0 {
			signal.Reset(s)
			_ = unix.Kill(os.Getpid(), s)
			time.Sleep(time.Second)
		}
	}
	if code == 0 {
		code = 1
	}
	os.Exit(code)
}

func adminAddress(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading bootstrap: %w", err)
	}
	var b struct {
		Admin struct {
			Address struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"address"`
		} `json:"admin"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return "", fmt.Errorf("parsing bootstrap: %w", err)
	}
	sa := b.Admin.Address.SocketAddress
	return net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue)), nil
}

func record() {
	if path := os.Getenv("FAKE_ENVOY_RECORD"); path != "" {
		b, _ := json.Marshal(map[string]any{"args": os.Args[1:], "env": os.Environ()})
		appendLine(path, string(b))
	}
}

func event(s string) {
	if path := os.Getenv("FAKE_ENVOY_EVENTS"); path != "" {
		appendLine(path, s)
	}
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line + "\n")
}
