// Package images_test checks the Dockerfiles without a container engine: they
// parse with buildkit's own parser, every COPY source exists (in the build
// context or as a build-stage output), entrypoints name binaries the build
// produces, and runtime images run as non-root.
package images_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

var dockerfiles = map[string]struct {
	path       string
	entrypoint string
	user       string
}{
	"proxy":       {path: "../Dockerfile", entrypoint: "/usr/local/bin/pilot-agent", user: "1337:1337"},
	"istiod-lite": {path: "istiod-lite/Dockerfile", entrypoint: "/usr/local/bin/istiod-lite", user: "65532:65532"},
}

var goBuildOut = regexp.MustCompile(`-o\s+(\S+)\s+(\./\S+)`)

func parse(t *testing.T, path string) []instructions.Stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return stages
}

func TestDockerfiles(t *testing.T) {
	for name, want := range dockerfiles {
		t.Run(name, func(t *testing.T) {
			stages := parse(t, want.path)
			if len(stages) < 2 {
				t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
			}
			// outputs[stage] = files its go build commands write.
			outputs := map[string]map[string]bool{}
			for i, st := range stages {
				outputs[st.Name] = map[string]bool{}
				for _, c := range st.Commands {
					switch c := c.(type) {
					case *instructions.RunCommand:
						for _, m := range goBuildOut.FindAllStringSubmatch(strings.Join(c.CmdLine, " "), -1) {
							outputs[st.Name][m[1]] = true
							if _, err := os.Stat(filepath.Join("..", m[2])); err != nil {
								t.Errorf("stage %q builds %s, which is not in the repository", st.Name, m[2])
							}
						}
					case *instructions.CopyCommand:
						checkCopy(t, stages[:i], outputs, c)
					}
				}
			}
			final := stages[len(stages)-1]
			var entry []string
			var user string
			copied := map[string]bool{}
			for _, c := range final.Commands {
				switch c := c.(type) {
				case *instructions.EntrypointCommand:
					entry = c.CmdLine
				case *instructions.UserCommand:
					user = c.User
				case *instructions.CopyCommand:
					copied[c.DestPath] = true
				}
			}
			if len(entry) == 0 || entry[0] != want.entrypoint {
				t.Errorf("ENTRYPOINT = %v, want %s", entry, want.entrypoint)
			} else if !copied[entry[0]] {
				t.Errorf("ENTRYPOINT %s is not a file the final stage copies from the build", entry[0])
			}
			if user != want.user {
				t.Errorf("final USER = %q, want %q (runtime images must not run as root)", user, want.user)
			}
			if u := strings.Split(user, ":")[0]; u == "" || u == "0" || u == "root" {
				t.Errorf("final stage runs as root (USER %q)", user)
			}
		})
	}
}

func checkCopy(t *testing.T, earlier []instructions.Stage, outputs map[string]map[string]bool, c *instructions.CopyCommand) {
	t.Helper()
	if c.From != "" {
		found := false
		for _, st := range earlier {
			found = found || st.Name == c.From
		}
		if !found {
			t.Errorf("COPY --from=%s names no earlier stage", c.From)
			return
		}
		for _, src := range c.SourcePaths {
			if !outputs[c.From][src] {
				t.Errorf("COPY --from=%s %s: that stage does not build %s", c.From, src, src)
			}
		}
		return
	}
	for _, src := range c.SourcePaths {
		if matches, _ := filepath.Glob(filepath.Join("..", src)); len(matches) == 0 {
			t.Errorf("COPY %s: not in the build context (the repository root)", src)
		}
	}
}
