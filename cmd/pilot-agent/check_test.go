package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/meshlite/meshlite/agent/config"
)

// -update rewrites golden files. Registered only if no other test file in
// this package did, so that several files can share the one flag.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files under testdata/")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if updateGolden() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update if intended):\n%s", path, diff)
	}
}

// pilotAgentBinary is $MESHLITE_BIN/pilot-agent (as `make test` builds it) or
// a fresh build of this package into dir.
func pilotAgentBinary(t *testing.T, dir string) string {
	t.Helper()
	if bin := os.Getenv("MESHLITE_BIN"); bin != "" {
		return filepath.Join(bin, "pilot-agent")
	}
	out := filepath.Join(dir, "pilot-agent")
	build := exec.Command("go", "build", "-o", out, ".")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// workload is one pod's view: its env, files copied to well-known paths
// under a fresh working dir, and the check arguments.
type workload struct {
	env   []string
	files map[string]string // destination (relative to the working dir) -> testdata source
	args  []string
}

var podEnv = []string{"POD_NAME=reviews-v1-7d9f", "POD_NAMESPACE=bookinfo", "INSTANCE_IP=10.244.1.17", "SERVICE_ACCOUNT=bookinfo-reviews"}

func (w workload) run(t *testing.T, bin string) (stdout, stderr string, code int) {
	t.Helper()
	dir := t.TempDir()
	for dst, src := range w.files {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, append([]string{"check"}, w.args...)...)
	cmd.Dir = dir
	cmd.Env = w.env // only what the test says: the runner's env must not leak in
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", bin, err)
	}
	// Sockets in the bootstrap are absolute; name the working dir stably for goldens.
	return strings.ReplaceAll(out.String(), dir, "$WORKDIR"), errb.String(), code
}

func TestCheckBinary(t *testing.T) {
	bin := pilotAgentBinary(t, t.TempDir())
	podFiles := map[string]string{
		config.DefaultMeshConfigPath:     "testdata/check/mesh.yaml",
		config.DefaultPodAnnotationsPath: "testdata/check/annotations",
	}

	t.Run("valid pod prints the effective config", func(t *testing.T) {
		w := workload{
			env: append(podEnv, "KUBERNETES_SERVICE_HOST=10.96.0.1", "ISTIO_META_CLUSTER_ID=east",
				"ISTIO_META_REGISTRY_TOKEN=tok-123", "PROXY_CONFIG=drainDuration: 20s", "SECRET_TTL=12h"),
			files: podFiles,
			args:  []string{"sidecar", "--proxyLogLevel=info", "--log_output_level=default:warn"},
		}
		stdout, stderr, code := w.run(t, bin)
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		if strings.Contains(stdout, "tok-123") {
			t.Error("the secret metadata value was printed")
		}
		for _, line := range []string{
			"# effective configuration (secrets masked)",
			"  id: sidecar~10.244.1.17~reviews-v1-7d9f.bookinfo~bookinfo.svc.cluster.local",
			"  spiffeID: spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews",
			"  concurrency: 1",     // annotation over default
			"  drainDuration: 20s", // PROXY_CONFIG over mesh
			"  logLevel: info",     // flag
			"  restartInPlace: false",
			"    REGISTRY_TOKEN: <redacted>",
		} {
			if !strings.Contains(stdout, line+"\n") {
				t.Errorf("output lacks line %q", line)
			}
		}
		golden(t, "testdata/check/pod.golden", []byte(stdout))
	})

	t.Run("router on a VM with flags", func(t *testing.T) {
		w := workload{
			env:  append(podEnv, "DISABLE_ENVOY=true", "OUTPUT_CERTS=./var/lib/istio/data"),
			args: []string{"router", "--domain=bookinfo.svc.corp", "--concurrency=4", "--capture", "--restart-envoy=false"},
		}
		stdout, stderr, code := w.run(t, bin)
		if code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		for _, line := range []string{
			"  id: router~10.244.1.17~reviews-v1-7d9f.bookinfo~bookinfo.svc.corp",
			"  concurrency: 4", "capture: true", "  restartInPlace: false", "  disabled: true",
			"  outputCerts: ./var/lib/istio/data", "platform: vm",
		} {
			if !strings.Contains(stdout, line+"\n") {
				t.Errorf("output lacks line %q:\n%s", line, stdout)
			}
		}
	})

	t.Run("invalid env lists every problem", func(t *testing.T) {
		w := workload{
			env:   []string{"POD_NAME=web", "INSTANCE_IP=10.0.0.1", "PILOT_CERT_PROVIDER=foo", "ECC_CURVE=P999", "SECRET_GRACE_PERIOD_RATIO=2", "FILE_MOUNTED_CERTS=maybe"},
			files: map[string]string{config.DefaultMeshConfigPath: "testdata/check/bad-mesh.yaml"},
			args:  []string{"--concurrency=-1"},
		}
		stdout, stderr, code := w.run(t, bin)
		if code != exitInvalidConfig {
			t.Errorf("exit %d, want %d", code, exitInvalidConfig)
		}
		if stdout != "" {
			t.Errorf("nothing should be printed on stdout for an invalid config, got:\n%s", stdout)
		}
		golden(t, "testdata/check/invalid.golden", []byte(stderr))
		for _, line := range []string{
			"Error: invalid configuration (7 problems):",
			`  - mesh config file ./etc/istio/config/mesh: unknown field "discoveryAdress" (allowed: MeshConfig YAML (istio.io/api mesh.v1alpha1))`,
			`  - PILOT_CERT_PROVIDER="foo": unknown certificate provider (allowed: istiod, custom, none)`,
			`  - FILE_MOUNTED_CERTS="maybe": not a boolean (allowed: true or false)`,
			`  - --concurrency="-1": out of range (allowed: 0 (one per CPU) to 1024)`,
			`  - POD_NAMESPACE: is not set; the namespace is part of the node ID and the SPIFFE identity (allowed: the pod's namespace, from the downward API field metadata.namespace)`,
			`  - SECRET_GRACE_PERIOD_RATIO="2": out of range (allowed: a number greater than 0 and less than 1)`,
			`  - ECC_CURVE="P999": unknown curve (allowed: P256, P384)`,
		} {
			if !strings.Contains(stderr, line+"\n") {
				t.Errorf("stderr lacks line %q:\n%s", line, stderr)
			}
		}
	})

	t.Run("explicit mesh config must exist", func(t *testing.T) {
		_, stderr, code := workload{env: podEnv, args: []string{"--meshConfig=/nonexistent/mesh"}}.run(t, bin)
		if code != exitInvalidConfig || !strings.Contains(stderr, `--meshConfig="/nonexistent/mesh": file does not exist`) {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})

	t.Run("unknown proxy type", func(t *testing.T) {
		_, stderr, code := workload{env: podEnv, args: []string{"gateway"}}.run(t, bin)
		if code != exitInvalidConfig || !strings.Contains(stderr, `proxy type="gateway": unknown proxy type (allowed: sidecar, router)`) {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})

	t.Run("bad log level is a usage error", func(t *testing.T) {
		_, stderr, code := workload{env: podEnv, args: []string{"--log_output_level=default:info,sds:loud"}}.run(t, bin)
		want := `Error: --log_output_level="default:info,sds:loud": scope sds has unknown level "loud" (allowed: debug, info, warn, error, fatal, none)`
		if code != 1 || strings.TrimSpace(stderr) != want {
			t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr, want)
		}
	})
}

// TestProxyFlagsOnlyOverrideWhenGiven: flag defaults must not hide the lower
// layers; only flags on the command line reach config.Flags.
func TestProxyFlagsOnlyOverrideWhenGiven(t *testing.T) {
	parse := func(args ...string) config.Options {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		p := addProxyFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return p.options(fs.Args())
	}
	o := parse()
	if o.ProxyType != config.ProxyTypeSidecar || o.MeshConfigFile != "" || o.Flags != (config.Flags{}) {
		t.Errorf("no flags given, got %+v", o)
	}
	o = parse("router", "--concurrency=0", "--domain=d.example", "--meshConfig=m.yaml", "--proxyLogLevel=debug",
		"--proxyComponentLogLevel=a:info", "--templateFile=t.json", "--restart-envoy", "--capture=false", "--dry-run")
	f := o.Flags
	if o.ProxyType != config.ProxyTypeRouter || o.MeshConfigFile != "m.yaml" || f.Concurrency == nil || *f.Concurrency != 0 ||
		*f.Domain != "d.example" || *f.ProxyLogLevel != "debug" || *f.ProxyComponentLogLevel != "a:info" ||
		*f.TemplateFile != "t.json" || !*f.RestartEnvoy || f.Capture == nil || *f.Capture || !f.DryRun {
		t.Errorf("all flags given, got %+v", o)
	}
}
