package status

import (
	"bytes"
	"io"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Reasons for dropped data, the "reason" label of the dropped counter.
const (
	dropBytes    = "bytes"    // the source exceeded the byte cap and was cut
	dropLines    = "lines"    // the source exceeded the line cap and was cut
	dropConflict = "conflict" // a family clashed with an earlier one
	dropInvalid  = "invalid"  // a family that did not parse
)

// capBody cuts b at the last complete line within maxBytes and maxLines,
// so that a huge or endless source cannot blow up the agent's memory and a
// cut never leaves half a sample. It returns the reason it cut, if any.
func capBody(b []byte, maxBytes int64, maxLines int) ([]byte, string) {
	reason := ""
	if maxBytes > 0 && int64(len(b)) > maxBytes {
		b = b[:maxBytes]
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		} else {
			b = nil
		}
		reason = dropBytes
	}
	if maxLines > 0 {
		lines, off := 0, 0
		for off < len(b) {
			i := bytes.IndexByte(b[off:], '\n')
			if i < 0 {
				off = len(b)
			} else {
				off += i + 1
			}
			lines++
			if lines == maxLines {
				if off < len(b) {
					b = b[:off]
					reason = dropLines
				}
				break
			}
		}
	}
	return b, reason
}

// isOpenMetrics tells OpenMetrics input apart from Prometheus text, by
// content type or, for servers that mislabel it, by its "# EOF" trailer.
func isOpenMetrics(contentType string, body []byte) bool {
	if strings.Contains(contentType, "application/openmetrics-text") {
		return true
	}
	t := bytes.TrimRight(body, "\r\n \t")
	return bytes.HasSuffix(t, []byte("\n# EOF")) || bytes.Equal(t, []byte("# EOF"))
}

// mergeWriter streams sources, in order, into one exposition. Each source
// is split into family blocks that are parsed and re-encoded one at a
// time, so memory stays bounded by the largest family rather than the
// whole scrape, and a malformed family costs only itself. A family name
// that an earlier source (or block) already wrote is dropped: Prometheus
// rejects a scrape that declares a family twice, and OpenMetrics forbids
// splitting one.
type mergeWriter struct {
	w       io.Writer
	enc     expfmt.Encoder
	scratch bytes.Buffer
	written map[string]bool
	// dropped counts, per source and reason (conflict, invalid), what
	// was left out.
	dropped map[[2]string]int
	err     error
}

func newMergeWriter(w io.Writer, format expfmt.Format) *mergeWriter {
	m := &mergeWriter{w: w, written: map[string]bool{}, dropped: map[[2]string]int{}}
	m.enc = expfmt.NewEncoder(&m.scratch, format)
	return m
}

// families writes already-parsed families (the agent's own registry).
func (m *mergeWriter) families(source string, fams []*dto.MetricFamily) {
	for _, f := range fams {
		m.family(source, f)
	}
}

// exposition writes a scraped source (Prometheus text or OpenMetrics).
func (m *mergeWriter) exposition(source string, body []byte, contentType string) {
	text, dups := normalize(body, isOpenMetrics(contentType, body))
	m.dropped[[2]string{source, dropConflict}] += dups
	p := expfmt.NewTextParser(model.UTF8Validation)
	for _, block := range splitFamilies(text) {
		byName, err := p.TextToMetricFamilies(bytes.NewReader(block))
		if err != nil {
			m.dropped[[2]string{source, dropInvalid}]++
			continue
		}
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			m.family(source, byName[n])
		}
	}
}

func (m *mergeWriter) family(source string, f *dto.MetricFamily) {
	if m.err != nil || len(f.GetMetric()) == 0 {
		return
	}
	if m.written[f.GetName()] {
		m.dropped[[2]string{source, dropConflict}]++
		return
	}
	m.scratch.Reset()
	if err := m.enc.Encode(f); err != nil {
		m.dropped[[2]string{source, dropInvalid}]++
		return
	}
	m.written[f.GetName()] = true
	_, m.err = m.w.Write(m.scratch.Bytes())
}

// close ends the exposition ("# EOF" for OpenMetrics).
func (m *mergeWriter) close() error {
	if m.err != nil {
		return m.err
	}
	if c, ok := m.enc.(expfmt.Closer); ok {
		m.scratch.Reset()
		if err := c.Close(); err != nil {
			return err
		}
		_, m.err = m.w.Write(m.scratch.Bytes())
	}
	return m.err
}

// splitFamilies cuts normalized text before each "# HELP"/"# TYPE" line
// that names a different family than the block being built.
func splitFamilies(text []byte) [][]byte {
	var blocks [][]byte
	start, cur := 0, ""
	for off := 0; off < len(text); {
		end := bytes.IndexByte(text[off:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += off + 1
		}
		line := text[off:end]
		if bytes.HasPrefix(line, []byte("# HELP ")) || bytes.HasPrefix(line, []byte("# TYPE ")) {
			name := ""
			if f := bytes.Fields(line[len("# TYPE "):]); len(f) > 0 {
				name = string(f[0])
			}
			if name != cur {
				if off > start {
					blocks = append(blocks, text[start:off])
				}
				start, cur = off, name
			}
		}
		off = end
	}
	if start < len(text) {
		blocks = append(blocks, text[start:])
	}
	return blocks
}
