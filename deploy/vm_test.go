package deploy

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	agentconfig "github.com/meshlite/meshlite/agent/config"
)

const (
	unitFile   = "vm/meshlite-agent.service"
	envFile    = "vm/agent.env"
	vmReadme   = "vm/README.md"
	agentPath  = "/usr/local/bin/pilot-agent" // where the README installs it, as in the proxy image
	envInstall = "/etc/meshlite/agent.env"
)

// unit is a parsed systemd unit: section → key → values in order.
type unit map[string]map[string][]string

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// parseUnit reads systemd's unit syntax: [Section], Key=Value, comments
// starting with # or ;, and lines continued with a trailing backslash.
func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	var cont strings.Builder
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		line = cont.String() + line
		cont.Reset()
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not Key=Value inside a [Section]: %q", file, n+1, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	return u
}

// execLine splits an Exec*= value into its prefixes ("+", "-", ...) and
// words; the units here use no quoting beyond plain words.
func execLine(v string) (prefix string, argv []string) {
	i := 0
	for i < len(v) && strings.ContainsRune("@-:+!", rune(v[i])) {
		i++
	}
	return v[:i], strings.Fields(v[i:])
}

// parseEnvFile reads systemd's EnvironmentFile syntax as used here: KEY=value
// lines, # and ; comments, a value optionally wrapped in one pair of quotes.
func parseEnvFile(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	nameRE := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !nameRE.MatchString(k) {
			t.Errorf("%s:%d: want NAME=value, got %q", file, n, line)
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if strings.Contains(v, "$") {
			t.Errorf("%s:%d: %s: systemd does not expand $ in an EnvironmentFile; write the value out", file, n, k)
		}
		if _, dup := out[k]; dup {
			t.Errorf("%s:%d: %s is set twice", file, n, k)
		}
		out[k] = v
	}
	return out
}

func TestVMUnit(t *testing.T) {
	u := parseUnit(t, unitFile)
	svc := u["Service"]
	if svc == nil {
		t.Fatalf("%s has no [Service] section", unitFile)
	}
	pilot := binary(t, "pilot-agent")

	prefix, argv := execLine(u.get("Service", "ExecStart"))
	if prefix != "" || len(argv) < 3 || argv[0] != agentPath || argv[1] != "proxy" || argv[2] != "sidecar" {
		t.Fatalf("ExecStart = %q, want %s proxy sidecar ... without privileges", u.get("Service", "ExecStart"), agentPath)
	}
	cl := checkCommand(t, unitFile+" ExecStart", pilot, []string{"proxy"}, argv[2:], nil, nil)
	for _, f := range []string{"restart-envoy", "capture"} {
		if cl.flags[f].value != "true" {
			t.Errorf("ExecStart must pass --%s (the VM restart mode and capture)", f)
		}
	}
	// The capture is removed after any stop, crash included, as root.
	cleanup := false
	for _, v := range svc["ExecStopPost"] {
		p, args := execLine(v)
		if len(args) > 1 && args[0] == agentPath && args[1] == "istio-iptables" {
			checkCommand(t, unitFile+" ExecStopPost", pilot, []string{"istio-iptables"}, args[2:], nil, nil)
			cleanup = strings.Contains(p, "+") && slices.Contains(args, "--cleanup-only")
		}
	}
	if !cleanup {
		t.Error("ExecStopPost must run `+" + agentPath + " istio-iptables --cleanup-only`, so a crash never leaves capture behind")
	}

	// The agent runs unprivileged except for the capabilities capture needs,
	// and as the user the capture exempts (istio-iptables' default -u).
	if got := u.get("Service", "User"); got != "istio-proxy" {
		t.Errorf("User = %q, want istio-proxy (the UID istio-iptables exempts by default)", got)
	}
	for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		caps := strings.Fields(u.get("Service", key))
		if !slices.Contains(caps, "CAP_NET_ADMIN") || !slices.Contains(caps, "CAP_NET_RAW") || len(caps) != 2 {
			t.Errorf("%s = %v, want exactly CAP_NET_ADMIN CAP_NET_RAW for --capture", key, caps)
		}
	}
	if got := u.get("Service", "Restart"); got != "on-failure" && got != "always" {
		t.Errorf("Restart = %q: on a VM nobody else restarts the agent", got)
	}
	wd := u.get("Service", "WorkingDirectory")
	if sd := u.get("Service", "StateDirectory"); wd != "/var/lib/"+sd {
		t.Errorf("WorkingDirectory %s should be the StateDirectory /var/lib/%s, which systemd creates for istio-proxy", wd, sd)
	}
	if got := u.get("Service", "EnvironmentFile"); strings.TrimPrefix(got, "-") != envInstall {
		t.Errorf("EnvironmentFile = %q, want %s (where the README installs agent.env)", got, envInstall)
	}

	// The README installs to the paths the unit and the agent use.
	readme, err := os.ReadFile(vmReadme)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		agentPath, envInstall, "/etc/systemd/system/meshlite-agent.service",
		path.Join(wd, agentconfig.DefaultTokenPath), path.Join(wd, agentconfig.DefaultRootCAFile),
	} {
		if !strings.Contains(string(readme), p) {
			t.Errorf("%s never mentions %s", vmReadme, p)
		}
	}
}

func TestVMUnitSystemdVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd); the unit is still parsed by TestVMUnit")
	}
	// verify insists that every Exec binary exists: point at the built one.
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	unitCopy := filepath.Join(dir, filepath.Base(unitFile))
	if err := os.WriteFile(unitCopy, []byte(strings.ReplaceAll(string(data), agentPath, binary(t, "pilot-agent"))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", unitCopy).CombinedOutput()
	// Unknown keys and bad values are only warnings: any output is a failure.
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
}

func TestVMEnvFile(t *testing.T) {
	env := parseEnvFile(t, envFile)
	allowed := agentEnvNames()
	capture := iptablesEnvNames(t)
	for name := range env {
		if !allowed[name] && !capture[name] && !strings.HasPrefix(name, agentconfig.MetaPrefix) && !strings.HasPrefix(name, agentconfig.MetaJSONPrefix) {
			t.Errorf("%s sets %s, which neither the agent (agent/config.EnvVars, PROXY_CONFIG, ISTIO_META_*) nor its capture (istio-iptables) reads", envFile, name)
		}
	}
	for _, name := range []string{"POD_NAMESPACE", "SERVICE_ACCOUNT", "PROXY_CONFIG", "CA_ADDR"} {
		if env[name] == "" {
			t.Errorf("%s must set %s", envFile, name)
		}
	}

	// The agent accepts it as the unit starts it: a VM (no
	// KUBERNETES_SERVICE_HOST), restarting Envoy itself, capturing.
	u := parseUnit(t, unitFile)
	wd := u.get("Service", "WorkingDirectory")
	work := t.TempDir()
	yes := true
	cfg, err := agentconfig.Load(agentconfig.Options{
		WorkDir: work, LookupEnv: agentconfig.MapEnv(env).Lookup, Environ: agentconfig.MapEnv(env).Environ,
		Hostname: func() (string, error) { return "vm-1", nil }, HostIPs: func() []string { return []string{"192.0.2.10"} },
		Flags: agentconfig.Flags{RestartEnvoy: &yes, Capture: &yes},
	})
	if err != nil {
		t.Fatalf("the agent rejects %s:\n%v", envFile, err)
	}
	if cfg.Platform != agentconfig.PlatformVM || !cfg.Envoy.RestartInPlace || !cfg.Capture {
		t.Errorf("platform %s, restart in place %v, capture %v; want vm, true, true", cfg.Platform, cfg.Envoy.RestartInPlace, cfg.Capture)
	}
	if got, want := cfg.Identity().String(), fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", env["TRUST_DOMAIN"], env["POD_NAMESPACE"], env["SERVICE_ACCOUNT"]); got != want {
		t.Errorf("identity = %s, want %s", got, want)
	}
	if root := cfg.ControlPlane.RootCAFile; !filepath.IsAbs(root) && path.Join(wd, root) != path.Join(wd, agentconfig.DefaultRootCAFile) {
		t.Errorf("CA_ROOT_CA = %s; the README copies the root to %s", root, path.Join(wd, agentconfig.DefaultRootCAFile))
	}

	// And so do the real binaries: `check` with the unit's flags (which also
	// renders the bootstrap), and the capture variables through istio-iptables.
	pilot := binary(t, "pilot-agent")
	_, argv := execLine(u.get("Service", "ExecStart"))
	args := append([]string{"check"}, argv[2:]...)
	if out, err := runBinary(pilot, work, env, args...); err != nil {
		t.Errorf("`pilot-agent %s` with %s: %v\n%s", strings.Join(args, " "), envFile, err, firstLines(out, 20))
	}
	if out, err := runBinary(pilot, work, env, "istio-iptables", "--dry-run"); err != nil {
		t.Errorf("`pilot-agent istio-iptables --dry-run` with %s: %v\n%s", envFile, err, firstLines(out, 20))
	}
}

// TestVMReadmeCommands checks every pilot-agent and istiod-lite command the
// walk-through tells users to type against the binaries' flags.
func TestVMReadmeCommands(t *testing.T) {
	for _, doc := range []string{vmReadme, filepath.Join(repoRoot, "docs", "deployment.md")} {
		cmds := readmeCommands(t, doc)
		if len(cmds) == 0 {
			t.Errorf("%s has no pilot-agent or istiod-lite command", doc)
		}
		t.Logf("%s: checking %d commands", doc, len(cmds))
		for _, c := range cmds {
			bin := binary(t, c.argv[0])
			verb, rest := splitVerb(c.argv[0], c.argv[1:])
			if len(verb) == 0 {
				t.Errorf("%s:%d: %q: unknown verb", doc, c.line, strings.Join(c.argv, " "))
				continue
			}
			// Shell variables stand for values; $(...) is shell here, not the kubelet's.
			for i, a := range rest {
				rest[i] = strings.NewReplacer("$(", "(").Replace(a)
			}
			checkCommand(t, fmt.Sprintf("%s:%d", doc, c.line), bin, verb, rest, nil, nil)
		}
	}
}

type shellCommand struct {
	line int
	argv []string
}

// readmeCommands extracts the pilot-agent and istiod-lite invocations from
// the fenced shell blocks of a Markdown file, joining continued lines.
func readmeCommands(t *testing.T, file string) []shellCommand {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []shellCommand
	inBlock := false
	var cur strings.Builder
	start := 0
	for n, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inBlock = !inBlock
			continue
		}
		if !inBlock {
			continue
		}
		if cur.Len() == 0 {
			start = n + 1
		}
		l := strings.TrimSpace(line)
		if strings.HasSuffix(l, `\`) {
			cur.WriteString(strings.TrimSuffix(l, `\`) + " ")
			continue
		}
		cur.WriteString(stripComment(l))
		full := cur.String()
		cur.Reset()
		// Each command of a pipeline or list on its own.
		for _, part := range regexp.MustCompile(`\s*(?:&&|\|\||;|\|)\s*`).Split(full, -1) {
			// The binary may follow a wrapper (sudo, systemd-run ...); a
			// binary named as an argument (install, ls) has no verb after it.
			words := shellWords(part)
			i := slices.IndexFunc(words, func(w string) bool {
				b := filepath.Base(w)
				return b == "pilot-agent" || b == "istiod-lite"
			})
			if i < 0 {
				continue
			}
			argv := append([]string{filepath.Base(words[i])}, words[i+1:]...)
			if v, _ := splitVerb(argv[0], argv[1:]); i > 0 && v == nil {
				continue
			}
			out = append(out, shellCommand{line: start, argv: argv})
		}
	}
	return out
}

// stripComment drops a shell comment: a # that starts a word outside quotes.
func stripComment(s string) string {
	var quote rune
	prevSpace := true
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && prevSpace:
			return strings.TrimSpace(s[:i])
		}
		prevSpace = r == ' ' || r == '\t'
	}
	return s
}

// shellWords splits a command line, honouring single and double quotes and
// dropping a trailing comment and redirections.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return dropRedirects(words)
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return dropRedirects(words)
}

func dropRedirects(words []string) []string {
	for i, w := range words {
		if strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") || strings.HasPrefix(w, "<") {
			return words[:i]
		}
	}
	return words
}

// splitVerb finds the subcommand path at the start of args.
func splitVerb(bin string, args []string) (verb, rest []string) {
	verbs := map[string][][]string{
		"pilot-agent": {{"proxy"}, {"check"}, {"wait"}, {"request"}, {"istio-iptables"}, {"version"}},
		"istiod-lite": {{"discovery"}, {"token", "keygen"}, {"token", "create"}, {"validate"}, {"version"}},
	}
	for _, v := range verbs[bin] {
		if len(args) >= len(v) && slices.Equal(args[:len(v)], v) {
			return v, append([]string{}, args[len(v):]...)
		}
	}
	return nil, args
}
