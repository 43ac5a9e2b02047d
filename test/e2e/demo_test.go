package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The demo as root: each workload in its own network namespace, the traffic
// shift followed by the counts, "where to look" lines, and on Ctrl-C every
// process, namespace and temp file gone.
func TestDemoNetnsMode(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	demo := filepath.Join(binDir, "demo")
	cmd := exec.Command(demo, "--bin", binDir, "--mesh", filepath.Join(repoRoot(), "examples", "mesh"), "--phase", "3s", "--netns", "on")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var transcript strings.Builder
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(90 * time.Second)
	next := func() (string, bool) {
		select {
		case l, ok := <-lines:
			transcript.WriteString(l + "\n")
			return l, ok
		case <-timeout:
			t.Fatalf("demo timed out; output so far:\n%s", transcript.String())
			return "", false
		}
	}
	var namespaces []string
	var workDir string
	var lastV2Only bool
	for {
		l, ok := next()
		if !ok {
			t.Fatalf("demo exited early:\n%s", transcript.String())
		}
		if m := regexp.MustCompile(`working directory (\S+)`).FindStringSubmatch(l); m != nil {
			workDir = m[1]
		}
		if m := regexp.MustCompile(`namespaces: \[(.*)\]`).FindStringSubmatch(l); m != nil {
			namespaces = strings.Fields(m[1])
		}
		if strings.Contains(l, "rpcs ok=") {
			lastV2Only = regexp.MustCompile(`last second: v1=0 v2=[1-9][0-9]* errors=0`).MatchString(l)
		}
		if strings.HasPrefix(l, "running; press Ctrl-C") {
			break
		}
	}
	if len(namespaces) != 4 {
		t.Errorf("demo reported namespaces %v; want the bridge's and one per workload (4)", namespaces)
	}
	live := netnsList(t)
	for _, ns := range namespaces {
		if !strings.Contains(live, ns) {
			t.Errorf("namespace %s is not in `ip netns list` while the demo runs", ns)
		}
	}
	text := transcript.String()
	for _, want := range []string{"traffic shift 3/3: greeter v1 0% / v2 100%", "failed=0", "/debug/syncz", ":15020/healthz/ready", "ip netns exec " + namespaces[0]} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if !lastV2Only {
		t.Errorf("after the 0/100 shift the last second was not all v2:\n%s", text)
	}
	// Zero failures across shifts is asserted strictly by the dedicated
	// scenarios; here, on a loaded 2-core machine running the whole test
	// suite, the first RPC to a new backend may hit the client's 2s deadline,
	// so a stray failure is logged with its error and only more fail the test.
	counts := regexp.MustCompile(`rpcs ok=(\d+) failed=(\d+)`).FindAllStringSubmatch(text, -1)
	if len(counts) == 0 {
		t.Fatalf("no summary lines in the demo output:\n%s", text)
	}
	last := counts[len(counts)-1]
	ok, _ := strconv.Atoi(last[1])
	failed, _ := strconv.Atoi(last[2])
	if failed > 0 {
		errs := regexp.MustCompile(`(?m)^\s+last error: .*$`).FindAllString(text, -1)
		if failed*100 > ok {
			t.Errorf("demo: %d of %d RPCs failed:\n%s", failed, ok+failed, text)
		} else {
			t.Logf("demo: %d of %d RPCs failed (tolerated under load): %s", failed, ok+failed, strings.Join(errs, "; "))
		}
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of Ctrl-C")
	}
	live = netnsList(t)
	for _, ns := range namespaces {
		if strings.Contains(live, ns) {
			t.Errorf("namespace %s left behind after Ctrl-C", ns)
		}
	}
	if workDir == "" {
		t.Error("demo did not print its working directory")
	} else if _, err := os.Stat(workDir); !os.IsNotExist(err) {
		t.Errorf("working directory %s left behind after Ctrl-C (stat: %v)", workDir, err)
	}
}

// A failure after the namespaces exist still removes them.
func TestDemoFailureRemovesNamespaces(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	out, err := exec.Command(filepath.Join(binDir, "demo"), "--bin", binDir, "--mesh", filepath.Join(t.TempDir(), "missing"), "--netns", "on", "--subnet", "10.78.0.0/24").CombinedOutput()
	if err == nil {
		t.Fatalf("demo with a missing mesh directory succeeded:\n%s", out)
	}
	m := regexp.MustCompile(`namespaces: \[(.*)\]`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("demo failed before creating namespaces; output:\n%s", out)
	}
	if !strings.Contains(string(out), "missing") {
		t.Errorf("the error does not name the missing directory:\n%s", out)
	}
	live := netnsList(t)
	for _, ns := range strings.Fields(m[1]) {
		if strings.Contains(live, ns) {
			t.Errorf("namespace %s left behind after a failed start", ns)
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: the demo's network-namespace mode needs root (the loopback scenarios above run without it)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command is missing (apt-get install -y iproute2)")
	}
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}
