package iptables

import (
	"bufio"
	"slices"
	"strings"
)

// tableState is one table as iptables-save printed it.
type tableState struct {
	chains []string            // every chain, built-in or not, in save order
	rules  map[string][]string // chain -> specs, in order
}

// ruleset is the parsed output of iptables-save for one family and backend.
type ruleset map[string]*tableState

func parseSave(out string) ruleset {
	rs := ruleset{}
	var cur *tableState
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			cur = &tableState{rules: map[string][]string{}}
			rs[line[1:]] = cur
		case cur == nil:
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			cur.chains = append(cur.chains, name)
		case strings.HasPrefix(line, "-A "):
			chain, spec, _ := strings.Cut(line[3:], " ")
			cur.rules[chain] = append(cur.rules[chain], spec)
		}
	}
	return rs
}

// ruleCount counts rules and user chains: anything that shows a backend is
// in use in this namespace.
func (rs ruleset) ruleCount() int {
	n := 0
	for _, t := range rs {
		for _, c := range t.chains {
			if !isBuiltin(c) {
				n++
			}
		}
		for _, r := range t.rules {
			n += len(r)
		}
	}
	return n
}

func (rs ruleset) hasOwnedChains() bool {
	for _, t := range rs {
		for _, c := range t.chains {
			if slices.Contains(OwnedChains, c) {
				return true
			}
		}
	}
	return false
}

// isOurs reports whether a rule in a built-in chain belongs to meshlite: it
// carries the marker, or it jumps into a chain only meshlite (or Istio) owns.
func isOurs(spec string) bool {
	if strings.Contains(spec, "--comment "+Marker+" ") || strings.HasSuffix(spec, "--comment "+Marker) {
		return true
	}
	_, target, ok := strings.Cut(spec, "-j ")
	if !ok {
		return false
	}
	target, _, _ = strings.Cut(target, " ")
	return slices.Contains(OwnedChains, target)
}

// owned extracts meshlite's part of a table: owned chains with their rules
// and our rules in built-in chains, keyed by chain.
func (t *tableState) owned() (chains []string, rules map[string][]string) {
	rules = map[string][]string{}
	if t == nil {
		return nil, rules
	}
	all := append([]string{}, t.chains...)
	var undeclared []string
	for c := range t.rules {
		if !slices.Contains(all, c) {
			undeclared = append(undeclared, c)
		}
	}
	slices.Sort(undeclared)
	for _, c := range append(all, undeclared...) {
		if slices.Contains(OwnedChains, c) {
			chains = append(chains, c)
			rules[c] = append([]string(nil), t.rules[c]...)
			continue
		}
		for _, s := range t.rules[c] {
			if isOurs(s) {
				rules[c] = append(rules[c], s)
			}
		}
	}
	return chains, rules
}

// desiredOwned is the same view of a planned table.
func desiredOwned(t Table) (chains []string, rules map[string][]string) {
	rules = map[string][]string{}
	chains = append(chains, t.Chains...)
	for _, r := range t.Rules {
		rules[r.Chain] = append(rules[r.Chain], r.Spec)
	}
	return chains, rules
}

// diffTable returns human-readable differences between the installed and
// desired meshlite rules of one table; empty means converged.
func diffTable(name string, cur *tableState, want Table) []string {
	cc, cr := cur.owned()
	wc, wr := desiredOwned(want)
	var d []string
	for _, c := range wc {
		if !slices.Contains(cc, c) {
			d = append(d, "missing chain "+name+"/"+c)
		}
	}
	for _, c := range cc {
		if !slices.Contains(wc, c) {
			d = append(d, "leftover chain "+name+"/"+c)
		}
	}
	keys := map[string]bool{}
	for k := range cr {
		keys[k] = true
	}
	for k := range wr {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	for _, c := range sorted {
		if slices.Equal(cr[c], wr[c]) {
			continue
		}
		for _, s := range wr[c] {
			if !slices.Contains(cr[c], s) {
				d = append(d, "missing rule in "+name+": -A "+c+" "+s)
			}
		}
		for _, s := range cr[c] {
			if !slices.Contains(wr[c], s) {
				d = append(d, "unexpected rule in "+name+": -A "+c+" "+s)
			}
		}
		if len(d) == 0 || !strings.Contains(d[len(d)-1], c) {
			d = append(d, "rules of "+name+"/"+c+" are out of order or duplicated")
		}
	}
	return d
}

// restoreInput renders the iptables-restore --noflush input that turns the
// current table into the desired one in one transaction: declare (and so
// flush) every owned chain, delete our rules from built-in chains, drop owned
// chains the plan no longer uses, then append the plan.
func restoreInput(name string, cur *tableState, want Table) string {
	cc, cr := cur.owned()
	var sb strings.Builder
	sb.WriteString("*" + name + "\n")
	declared := map[string]bool{}
	for _, c := range append(append([]string{}, want.Chains...), cc...) {
		if !declared[c] {
			declared[c] = true
			sb.WriteString(":" + c + " - [0:0]\n")
		}
	}
	builtins := make([]string, 0, len(cr))
	for c := range cr {
		if isBuiltin(c) {
			builtins = append(builtins, c)
		}
	}
	slices.Sort(builtins)
	for _, c := range builtins {
		for _, s := range cr[c] {
			sb.WriteString("-D " + c + " " + s + "\n")
		}
	}
	for _, c := range cc {
		if !slices.Contains(want.Chains, c) {
			sb.WriteString("-X " + c + "\n")
		}
	}
	for _, r := range want.Rules {
		sb.WriteString(r.String() + "\n")
	}
	sb.WriteString("COMMIT\n")
	return sb.String()
}
