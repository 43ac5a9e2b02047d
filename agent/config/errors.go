package config

import (
	"fmt"
	"strings"
)

// FieldError is one bad setting: which one, what it was, why it is wrong and
// what would be accepted.
type FieldError struct {
	// Field names the setting as the user wrote it: an env var (SECRET_TTL), a
	// flag (--concurrency), a ProxyConfig field (proxyConfig.statusPort) or a file.
	Field   string
	Value   string
	Reason  string
	Allowed string // empty when the reason says it all
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Field)
	if e.Value != "" {
		fmt.Fprintf(&b, "=%q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Allowed != "" {
		b.WriteString(" (allowed: ")
		b.WriteString(e.Allowed)
		b.WriteString(")")
	}
	return b.String()
}

// Errors is every problem found in a configuration, in a stable order. It
// unwraps to its members, so errors.As finds a *FieldError.
type Errors []error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = "  - " + e.Error()
	}
	noun := "problems"
	if len(es) == 1 {
		noun = "problem"
	}
	return fmt.Sprintf("invalid configuration (%d %s):\n%s", len(es), noun, strings.Join(lines, "\n"))
}

func (es Errors) Unwrap() []error { return es }

// err returns nil for an empty list so callers can `return es.err()`.
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

func (es *Errors) add(field, value, reason, allowed string) {
	*es = append(*es, &FieldError{Field: field, Value: value, Reason: reason, Allowed: allowed})
}
