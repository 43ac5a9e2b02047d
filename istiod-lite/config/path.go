package config

import (
	"fmt"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// fieldPath is the location of a field inside a document, kept as segments
// (not a string) so that it can be both printed and looked up in the YAML node
// tree for a line number.
type fieldPath []segment

type segment struct {
	name  string // field name or map key
	index int
	kind  segKind
}

type segKind uint8

const (
	segField segKind = iota
	segIndex
	segKey
)

func root(name string) fieldPath { return fieldPath{{name: name}} }

// field, index and key return extended copies; paths are shared between
// sibling calls, so appending in place would corrupt them.
func (p fieldPath) field(name string) fieldPath { return p.with(segment{name: name}) }
func (p fieldPath) index(i int) fieldPath       { return p.with(segment{index: i, kind: segIndex}) }
func (p fieldPath) key(k string) fieldPath      { return p.with(segment{name: k, kind: segKey}) }

func (p fieldPath) with(s segment) fieldPath {
	out := make(fieldPath, len(p), len(p)+1)
	copy(out, p)
	return append(out, s)
}

func (p fieldPath) String() string {
	var b strings.Builder
	for i, s := range p {
		switch s.kind {
		case segField:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.name)
		case segIndex:
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
		case segKey:
			b.WriteString("[" + s.name + "]")
		}
	}
	return b.String()
}

// lineOf returns the line of the deepest node of p that exists in doc (the
// document's top mapping), or 0 when even the first segment is missing.
func lineOf(doc *yaml.Node, p fieldPath) int {
	n, line := doc, 0
	for _, s := range p {
		if n == nil {
			break
		}
		switch {
		case n.Kind == yaml.MappingNode && s.kind != segIndex:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Value == s.name || (s.kind == segField && lowerCamel(k.Value) == s.name) {
					next, line = n.Content[i+1], k.Line
					break
				}
			}
			n = next
		case n.Kind == yaml.SequenceNode && s.kind == segIndex && s.index < len(n.Content):
			n = n.Content[s.index]
			line = n.Line
		default:
			n = nil
		}
	}
	return line
}

// lowerCamel maps proto field names (per_try_timeout) to their JSON names
// (perTryTimeout), since both spellings are accepted in YAML.
func lowerCamel(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	var b strings.Builder
	up := false
	for _, r := range s {
		if r == '_' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}

// reporter collects the errors of one document, stamping each with the
// document's location and identity.
type reporter struct {
	src       model.Source
	node      *yaml.Node
	kind      string
	namespace string
	name      string
	errs      *Errors
}

func (r *reporter) errorf(p fieldPath, format string, args ...any) {
	e := Error{
		Source:    r.src,
		Kind:      r.kind,
		Namespace: r.namespace,
		Name:      r.name,
		Path:      p.String(),
		Msg:       fmt.Sprintf(format, args...),
	}
	if r.node != nil && len(p) > 0 {
		e.Line = lineOf(r.node, p)
	}
	if e.Line == 0 {
		e.Line = r.src.Line
	}
	*r.errs = append(*r.errs, e)
}
