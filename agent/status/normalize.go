package status

import (
	"bytes"
	"strings"
)

// normalize rewrites one source's exposition into Prometheus text that
// expfmt's parser accepts, line by line:
//   - repeated "# TYPE"/"# HELP" lines for a family (and a TYPE arriving
//     after the family's samples) are dropped: the first one wins;
//   - unknown metric types become untyped; other comments are dropped;
//   - with om set (OpenMetrics input): "# EOF" ends the input, "# UNIT"
//     lines, "_created" series, exemplars and (float, seconds) timestamps
//     are dropped, counter families are renamed to their "_total" series,
//     info families to "_info", and OpenMetrics-only types are mapped to
//     Prometheus ones.
//
// It returns how many lines it dropped for being conflicting duplicates.
func normalize(in []byte, om bool) ([]byte, int) {
	n := &normalizer{
		om:         om,
		seenType:   map[string]bool{},
		seenHelp:   map[string]bool{},
		seenSample: map[string]bool{},
		out:        bytes.NewBuffer(make([]byte, 0, len(in))),
	}
	for len(in) > 0 {
		var line []byte
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line, in = in[:i], in[i+1:]
		} else {
			line, in = in, nil
		}
		if !n.line(string(bytes.TrimRight(line, "\r"))) {
			break
		}
	}
	n.flushHelp()
	return n.out.Bytes(), n.dups
}

type normalizer struct {
	om                             bool
	seenType, seenHelp, seenSample map[string]bool
	out                            *bytes.Buffer
	dups                           int

	// OpenMetrics family context.
	famName, famType, famPromName string
	// OpenMetrics allows HELP before TYPE, but the family's Prometheus
	// name is only known from its TYPE; hold HELP until then.
	pendingHelpName, pendingHelp string
}

// line handles one line and reports whether to continue.
func (n *normalizer) line(l string) bool {
	if strings.TrimSpace(l) == "" {
		return true
	}
	if strings.HasPrefix(l, "#") {
		return n.comment(l)
	}
	n.flushHelp()
	name := sampleName(l)
	if n.om {
		if strings.HasSuffix(name, "_created") && strings.TrimSuffix(name, "_created") == n.famName {
			switch n.famType {
			case "counter", "histogram", "summary", "gaugehistogram":
				return true
			}
		}
		l = stripOpenMetricsSample(l, name)
	}
	n.seenSample[name] = true
	n.out.WriteString(l)
	n.out.WriteByte('\n')
	return true
}

func (n *normalizer) comment(l string) bool {
	rest := strings.TrimSpace(strings.TrimPrefix(l, "#"))
	if n.om && rest == "EOF" {
		return false
	}
	kind, rest, _ := strings.Cut(rest, " ")
	name, text, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
	if name == "" {
		n.dups++
		return true
	}
	switch kind {
	case "TYPE":
		typ := strings.TrimSpace(text)
		promName := name
		if n.om {
			n.famName, n.famType, n.famPromName = name, typ, ""
			switch typ {
			case "counter":
				if !strings.HasSuffix(promName, "_total") {
					promName += "_total"
				}
			case "info":
				if !strings.HasSuffix(promName, "_info") {
					promName += "_info"
				}
				typ = "gauge"
			case "stateset":
				typ = "gauge"
			}
		}
		switch typ {
		case "counter", "gauge", "histogram", "summary", "untyped":
		default:
			typ = "untyped"
		}
		if n.seenType[promName] || n.seenSample[promName] {
			n.dups++
			n.dropPendingHelp(name)
			return true
		}
		n.seenType[promName] = true
		if n.om {
			n.famPromName = promName
		}
		n.out.WriteString("# TYPE " + promName + " " + typ + "\n")
		if n.pendingHelpName == name {
			n.pendingHelpName = promName
		}
		n.flushHelp()
	case "HELP":
		if n.om {
			n.flushHelp()
			text = strings.ReplaceAll(text, `\"`, `"`)
			if name == n.famName && n.famPromName != "" {
				// HELP after TYPE: the Prometheus name is known.
				n.writeHelp(n.famPromName, text)
				return true
			}
			n.pendingHelpName, n.pendingHelp = name, text
			return true
		}
		n.writeHelp(name, text)
	}
	// UNIT and free-form comments carry nothing the merge needs.
	return true
}

func (n *normalizer) dropPendingHelp(name string) {
	if n.pendingHelpName == name {
		n.pendingHelpName, n.pendingHelp = "", ""
	}
}

func (n *normalizer) flushHelp() {
	if n.pendingHelpName == "" {
		return
	}
	n.writeHelp(n.pendingHelpName, n.pendingHelp)
	n.pendingHelpName, n.pendingHelp = "", ""
}

func (n *normalizer) writeHelp(name, text string) {
	if n.seenHelp[name] {
		n.dups++
		return
	}
	n.seenHelp[name] = true
	n.out.WriteString("# HELP " + name + " " + text + "\n")
}

// sampleName returns the metric name at the start of a sample line.
func sampleName(l string) string {
	if i := strings.IndexAny(l, "{ \t"); i >= 0 {
		return l[:i]
	}
	return l
}

// stripOpenMetricsSample keeps "name{labels} value" and drops the
// exemplar and the timestamp, which OpenMetrics writes in float seconds
// where the text format wants integer milliseconds.
func stripOpenMetricsSample(l, name string) string {
	rest := l[len(name):]
	labels := ""
	if strings.HasPrefix(rest, "{") {
		end := labelsEnd(rest)
		if end < 0 {
			return l // malformed; let the parser report it
		}
		labels, rest = rest[:end+1], rest[end+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return l
	}
	return name + labels + " " + fields[0]
}

// labelsEnd finds the '}' closing a label set, skipping quoted values.
func labelsEnd(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == '}' && !inQuote:
			return i
		}
	}
	return -1
}
