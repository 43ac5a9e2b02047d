package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseAnnotations reads a Kubernetes downward API annotations (or labels)
// file: one `key="value"` per line, the value Go-quoted (newlines appear as \n).
// Errors name the 1-based line so that a hand-written file can be fixed.
func ParseAnnotations(data []byte) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, quoted, ok := strings.Cut(line, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("line %d: want key=\"value\", got %q", i+1, line)
		}
		v, err := strconv.Unquote(quoted)
		if err != nil {
			return nil, fmt.Errorf("line %d: value of %s is not a double-quoted string: %s", i+1, key, quoted)
		}
		out[key] = v
	}
	return out, nil
}
