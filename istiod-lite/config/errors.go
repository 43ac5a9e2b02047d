package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// Error is one validation problem, located precisely enough that a user can
// jump to it: file, document, line, the object it belongs to and the field path.
type Error struct {
	Source    model.Source // File, 0-based Document, Line of the document start
	Line      int          // 1-based line of the offending field, or of the document when unknown
	Kind      string       // empty when the document could not be identified
	Namespace string
	Name      string
	Path      string // e.g. spec.http[0].route[1].weight; empty for whole-document problems
	Msg       string
}

// Error renders `file:line: doc N Kind ns/name: path: problem`, one line, so
// editors and CI logs can link it.
func (e Error) Error() string {
	var b strings.Builder
	file := e.Source.File
	if file == "" {
		file = "<input>"
	}
	line := e.Line
	if line == 0 {
		line = e.Source.Line
	}
	switch {
	case line > 0:
		fmt.Fprintf(&b, "%s:%d: doc %d", file, line, e.Source.Document)
	case e.Kind == "":
		b.WriteString(file) // a problem with the file itself, not a document
	default:
		fmt.Fprintf(&b, "%s: doc %d", file, e.Source.Document)
	}
	switch {
	case e.Kind == "":
	case e.Name == "":
		fmt.Fprintf(&b, " %s", e.Kind)
	case e.Namespace == "":
		fmt.Fprintf(&b, " %s %s", e.Kind, e.Name)
	default:
		fmt.Fprintf(&b, " %s %s/%s", e.Kind, e.Namespace, e.Name)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is the complete set of problems of one validation run. It is returned
// whole so a user fixes everything in one pass instead of one error per run.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns nil for an empty set, so callers can write `if err := es.Err(); err != nil`.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// sort orders errors by file, document, line and path so output is stable.
func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b Error) int {
		return cmp.Or(
			cmp.Compare(a.Source.File, b.Source.File),
			cmp.Compare(a.Source.Document, b.Source.Document),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
}
