package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestParseLevels(t *testing.T) {
	tests := []struct {
		in   string
		want string // Levels.String()
		sds  slog.Level
		xds  slog.Level
	}{
		{"", "default:info", slog.LevelInfo, slog.LevelInfo},
		{"info", "default:info", slog.LevelInfo, slog.LevelInfo},
		{"debug", "default:debug", slog.LevelDebug, slog.LevelDebug},
		{"default:info,sds:debug", "default:info,sds:debug", slog.LevelDebug, slog.LevelInfo},
		{"default:warn, sds:DEBUG ,xds:none", "default:warn,sds:debug,xds:none", slog.LevelDebug, LevelNone},
		{"sds:debug,all:error", "default:error,sds:error", slog.LevelError, slog.LevelError},
		{"all:error,sds:debug", "default:error,sds:debug", slog.LevelDebug, slog.LevelError},
		{"warning", "default:warn", slog.LevelWarn, slog.LevelWarn},
		{"fatal", "default:fatal", levelFatal, levelFatal},
	}
	for _, tt := range tests {
		l, err := ParseLevels(tt.in)
		if err != nil {
			t.Errorf("ParseLevels(%q): %v", tt.in, err)
			continue
		}
		if got := l.String(); got != tt.want {
			t.Errorf("ParseLevels(%q) = %s, want %s", tt.in, got, tt.want)
		}
		if l.For("sds") != tt.sds || l.For("xds") != tt.xds {
			t.Errorf("ParseLevels(%q): sds=%v xds=%v, want %v %v", tt.in, l.For("sds"), l.For("xds"), tt.sds, tt.xds)
		}
	}
}

func TestParseLevelsErrors(t *testing.T) {
	for in, want := range map[string]string{
		"loud":                    `--log_output_level="loud": scope default has unknown level "loud" (allowed: debug, info, warn, error, fatal, none)`,
		"default:info,sds:chatty": `--log_output_level="default:info,sds:chatty": scope sds has unknown level "chatty" (allowed: debug, info, warn, error, fatal, none)`,
		":debug":                  `--log_output_level=":debug": item ":debug" has no scope before ':' (use <scope>:<level>, e.g. sds:debug)`,
	} {
		_, err := ParseLevels(in)
		if err == nil || err.Error() != want {
			t.Errorf("ParseLevels(%q) = %v\nwant %s", in, err, want)
		}
	}
}

// newLogger builds a logger from flag values, as the mains do.
func newLogger(t *testing.T, args ...string) (*slog.Logger, *Handler, *bytes.Buffer) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o := AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	l, h, err := o.New(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return l, h, &buf
}

func lines(b *bytes.Buffer) []string {
	s := strings.TrimSpace(b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestScopeFiltering(t *testing.T) {
	l, _, buf := newLogger(t, "--log_output_level=default:info,sds:debug,xds:none")
	sds := l.With(ScopeKey, "sds")
	xds := l.With(ScopeKey, "xds")
	other := l.With(ScopeKey, "envoy")

	l.Debug("default debug")   // dropped: default is info
	l.Info("default info")     // kept
	sds.Debug("sds debug")     // kept: sds is debug
	xds.Error("xds error")     // dropped: xds is none
	other.Debug("envoy debug") // dropped: follows default
	other.Warn("envoy warn")   // kept
	sds.With("k", "v").Debug("derived keeps scope")

	got := lines(buf)
	want := []string{"default info", "sds debug", "envoy warn", "derived keeps scope"}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), buf)
	}
	for i, w := range want {
		if !strings.Contains(got[i], "msg=\""+w+"\"") {
			t.Errorf("line %d = %s, want msg %q", i, got[i], w)
		}
	}
	if !strings.Contains(got[1], "scope=sds") || !strings.Contains(got[3], "k=v") {
		t.Errorf("attributes lost:\n%s", buf)
	}
}

func TestScopeInsideGroupIsData(t *testing.T) {
	l, _, buf := newLogger(t, "--log_output_level=default:info,sds:none")
	l.WithGroup("req").With(ScopeKey, "sds").Info("kept: a grouped scope key is not our scope")
	if len(lines(buf)) != 1 {
		t.Fatalf("want 1 line, got:\n%s", buf)
	}
}

func TestJSONOutput(t *testing.T) {
	l, _, buf := newLogger(t, "--log_as_json", "--log_output_level=sds:debug")
	l.With(ScopeKey, "sds").Debug("rotated", "resource", "default")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf)
	}
	for k, v := range map[string]any{"level": "DEBUG", "msg": "rotated", "scope": "sds", "resource": "default"} {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v (record %v)", k, rec[k], v, rec)
		}
	}
}

func TestSetLevelsReachesDerivedLoggers(t *testing.T) {
	l, h, buf := newLogger(t)
	sds := l.With(ScopeKey, "sds")
	sds.Debug("hidden")
	lv, err := ParseLevels("sds:debug")
	if err != nil {
		t.Fatal(err)
	}
	h.SetLevels(lv)
	sds.Debug("shown")
	if got := lines(buf); len(got) != 1 || !strings.Contains(got[0], "shown") {
		t.Errorf("got:\n%s", buf)
	}
}

func TestSetupBadFlagAndDefault(t *testing.T) {
	o := &Options{OutputLevels: "sds:loud"}
	if _, err := o.Setup(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "scope sds") || !strings.Contains(err.Error(), AllowedLevels) {
		t.Errorf("Setup with a bad level: %v", err)
	}

	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	var buf bytes.Buffer
	o = &Options{OutputLevels: "warn"}
	if _, err := o.Setup(&buf); err != nil {
		t.Fatal(err)
	}
	slog.Info("dropped")
	slog.Warn("kept")
	if got := lines(&buf); len(got) != 1 || !strings.Contains(got[0], "kept") {
		t.Errorf("default logger output:\n%s", buf.String())
	}
}

func TestFlagDefaults(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	if f := fs.Lookup("log_output_level"); f == nil || f.DefValue != "default:info" {
		t.Errorf("--log_output_level default: %+v", f)
	}
	if f := fs.Lookup("log_as_json"); f == nil || f.DefValue != "false" {
		t.Errorf("--log_as_json default: %+v", f)
	}
}

func BenchmarkFilteredDebug(b *testing.B) {
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	o := AddFlags(fs)
	var buf bytes.Buffer
	l, _, err := o.New(&buf)
	if err != nil {
		b.Fatal(err)
	}
	sds := l.With(ScopeKey, "sds")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sds.Debug("dropped", "i", i)
	}
}
