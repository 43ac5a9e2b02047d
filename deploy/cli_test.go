// Package deploy holds only tests: they check the Kubernetes manifests and the
// VM install against the code, so that a renamed flag, env var, port or path
// fails here instead of in a user's cluster.
package deploy

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/pflag"
)

// repoRoot is the module root; tests run in deploy/.
const repoRoot = ".."

var (
	buildOnce sync.Once
	binDir    string
	builtDir  string // removed by TestMain when this package built the binaries
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// binary returns the path of pilot-agent or istiod-lite: from $MESHLITE_BIN
// when `make test` built them, otherwise built once here from the tree.
func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		if d := os.Getenv("MESHLITE_BIN"); d != "" {
			if isExecutable(filepath.Join(d, "pilot-agent")) && isExecutable(filepath.Join(d, "istiod-lite")) {
				binDir = d
				return
			}
		}
		dir, err := os.MkdirTemp("", "meshlite-deploy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtDir = dir
		cmd := exec.Command(goTool(), "build", "-o", dir+string(filepath.Separator), "./cmd/pilot-agent", "./cmd/istiod-lite")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/pilot-agent ./cmd/istiod-lite: %w\n%s", err, out)
			return
		}
		binDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func goTool() string {
	// The go that runs the tests; `go env GOROOT` is not needed: PATH has it in CI.
	if p, err := exec.LookPath("go"); err == nil && isExecutable(p) {
		return p
	}
	return "go"
}

// flagSpec is one flag as the binary's --help lists it.
type flagSpec struct {
	long, short string
	takesValue  bool
	def         string // the (default ...) text, unquoted; empty when none is shown
}

// cliSpec is the flag set of one verb, global flags included.
type cliSpec struct {
	command string
	byLong  map[string]flagSpec
	byShort map[string]flagSpec
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]cliSpec{}
	// "  -p, --envoy-port uint16   text (default 15001)" or "      --capture   text";
	// the value name may be several words (pflag's `backquoted` usage).
	helpFlagRE = regexp.MustCompile(`^\s+(?:-([A-Za-z0-9]), )?--([A-Za-z0-9_.-]+)(.*)$`)
	defaultRE  = regexp.MustCompile(`\(default (.*)\)$`)
)

// helpSpec runs `<bin> <verb...> --help` and reads its Flags and Global Flags.
func helpSpec(t *testing.T, bin string, verb ...string) cliSpec {
	t.Helper()
	key := bin + "\x00" + strings.Join(verb, " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if s, ok := helpCache[key]; ok {
		return s
	}
	command := filepath.Base(bin) + " " + strings.Join(verb, " ")
	out, err := exec.Command(bin, append(append([]string{}, verb...), "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("`%s --help` failed (does the verb exist?): %v\n%s", command, err, out)
	}
	s := cliSpec{command: command, byLong: map[string]flagSpec{}, byShort: map[string]flagSpec{}}
	inFlags := false
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Flags:" || line == "Global Flags:":
			inFlags = true
			continue
		case strings.TrimSpace(line) == "":
			inFlags = false
			continue
		case !inFlags:
			continue
		}
		m := helpFlagRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		// One space then a word is the value name; usage text follows two or more.
		rest := m[3]
		f := flagSpec{short: m[1], long: m[2], takesValue: len(rest) >= 2 && rest[0] == ' ' && rest[1] != ' '}
		if d := defaultRE.FindStringSubmatch(rest); d != nil {
			f.def = strings.Trim(d[1], `"`)
		}
		s.byLong[f.long] = f
		if f.short != "" {
			s.byShort[f.short] = f
		}
	}
	if len(s.byLong) == 0 {
		t.Fatalf("no flags found in `%s --help`; has its format changed?\n%s", command, out)
	}
	helpCache[key] = s
	return s
}

// pendingFlag is a flag the manifests use that the binary does not accept
// yet: declared by a library (fs) but not wired into the command, or an
// Istio name still to be implemented (fs nil). Each one is logged, never
// silently accepted, and its value is checked when fs declares it.
type pendingFlag struct {
	why string
	fs  *pflag.FlagSet
}

// parsedFlag is one flag occurrence on a command line.
type parsedFlag struct {
	name   string // long name
	value  string // with $(VAR) references replaced by "x"
	raw    string // as written, $(VAR) references kept
	tokens []string
}

// commandLine is a command line checked against the binary.
type commandLine struct {
	flags      map[string]parsedFlag // by long name, last occurrence
	positional []string
}

// value returns the flag's value on the command line, else the binary's default.
func (c commandLine) value(spec cliSpec, name string) string {
	if f, ok := c.flags[name]; ok {
		return f.value
	}
	return spec.byLong[name].def
}

var varRefRE = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkCommand checks that args (after the verb) are accepted by the binary:
// every flag exists (or is a listed pending one), $(VAR) references name
// variables the container defines, and `<verb> <args> --help` parses them,
// which also checks each value's type, without running the command.
func checkCommand(t *testing.T, where, bin string, verb []string, args []string, env map[string]bool, pending map[string]pendingFlag) commandLine {
	t.Helper()
	spec := helpSpec(t, bin, verb...)
	expanded := make([]string, len(args))
	for i, a := range args {
		for _, m := range varRefRE.FindAllStringSubmatch(a, -1) {
			if !env[m[1]] {
				t.Errorf("%s: argument %q refers to $(%s), which the container does not define; the kubelet would pass it literally", where, a, m[1])
			}
		}
		expanded[i] = varRefRE.ReplaceAllString(a, "x")
	}
	cl := commandLine{flags: map[string]parsedFlag{}}
	var keep []string
	for i := 0; i < len(expanded); i++ {
		tok := expanded[i]
		if tok == "--" {
			cl.positional = append(cl.positional, expanded[i+1:]...)
			keep = append(keep, expanded[i:]...)
			break
		}
		if !strings.HasPrefix(tok, "-") || tok == "-" {
			cl.positional = append(cl.positional, tok)
			keep = append(keep, tok)
			continue
		}
		var f flagSpec
		var known bool
		var name, value, raw string
		hasValue := false
		if strings.HasPrefix(tok, "--") {
			name, value, hasValue = strings.Cut(tok[2:], "=")
			_, raw, _ = strings.Cut(args[i], "=")
			f, known = spec.byLong[name]
		} else {
			short := tok[1:2]
			f, known = spec.byShort[short]
			name = f.long
			if len(tok) > 2 {
				value, hasValue = strings.TrimPrefix(tok[2:], "="), true
				raw = strings.TrimPrefix(args[i][2:], "=")
			}
			if !known {
				t.Errorf("%s: flag %s is not accepted by `%s` (see its --help)", where, tok, spec.command)
				continue
			}
		}
		tokens := []string{tok}
		takesValue := f.takesValue
		if !known {
			if p, ok := pending[name]; ok && p.fs != nil {
				if pf := p.fs.Lookup(name); pf != nil {
					takesValue = pf.NoOptDefVal == ""
				}
			}
		}
		if takesValue && !hasValue {
			if i+1 >= len(expanded) {
				t.Errorf("%s: flag %s needs a value", where, tok)
				continue
			}
			i++
			value, raw, hasValue = expanded[i], args[i], true
			tokens = append(tokens, expanded[i])
		}
		if !hasValue {
			value, raw = "true", "true"
		}
		cl.flags[name] = parsedFlag{name: name, value: value, raw: raw, tokens: tokens}
		if known {
			keep = append(keep, tokens...)
			continue
		}
		p, ok := pending[name]
		if !ok {
			t.Errorf("%s: flag --%s is not accepted by `%s` (see its --help)", where, name, spec.command)
			continue
		}
		t.Logf("%s: flag --%s is not accepted by `%s` yet: %s", where, name, spec.command, p.why)
		if p.fs != nil {
			if err := p.fs.Set(name, value); err != nil {
				t.Errorf("%s: --%s=%q: %v", where, name, value, err)
			}
		}
	}
	// --help after the arguments: cobra parses every flag (and fails on a bad
	// value) before it prints help, and runs nothing.
	cmd := exec.Command(bin, append(append(append([]string{}, verb...), keep...), "--help")...)
	cmd.Env = []string{}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: `%s %s` does not parse: %v\n%s", where, spec.command, strings.Join(keep, " "), err, firstLines(string(out), 5))
	}
	return cl
}

// runBinary runs bin with exactly env (no inherited variables) in dir.
func runBinary(bin, dir string, env map[string]string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("exit status %d", ee.ExitCode())
	}
	return string(out), err
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n")
}

// iptablesEnvNames are the variables `pilot-agent istio-iptables` (and the
// agent's own capture) reads. They live in package main, so they are read
// from its source: every quoted UPPER_CASE name there is a variable name.
func iptablesEnvNames(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "pilot-agent", "istio_iptables.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"`).FindAllStringSubmatch(string(src), -1) {
		names[m[1]] = true
	}
	if !names["ISTIO_SERVICE_CIDR"] {
		t.Fatalf("no istio-iptables environment names found in cmd/pilot-agent/istio_iptables.go; has it moved?")
	}
	return names
}
