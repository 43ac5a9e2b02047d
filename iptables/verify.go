package iptables

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	goipt "github.com/coreos/go-iptables/iptables"
)

// Verify compares the installed rules with the plan for cfg, chain by chain,
// through go-iptables (existence checks and listing), and returns every
// difference; none means capture is exactly as planned. It only reads: a
// table is listed only when it already exists, because listing a missing
// legacy table would create it.
//
// Install verifies with a single iptables-save instead, which costs one
// process rather than one per chain; Verify is for validation and
// diagnosis, where clarity beats speed.
func Verify(ctx context.Context, cfg CaptureConfig, opts ...Option) ([]string, error) {
	o := buildOptions(opts)
	p, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, fp := range p.Families {
		det, err := detect(ctx, fp.Family, o.backend)
		if err != nil {
			return nil, err
		}
		pr, err := verifyFamily(fp, det, o)
		if err != nil {
			return nil, err
		}
		problems = append(problems, pr...)
	}
	return problems, nil
}

func verifyFamily(fp FamilyPlan, det detection, o options) ([]string, error) {
	proto := goipt.ProtocolIPv4
	if fp.Family == IPv6 {
		proto = goipt.ProtocolIPv6
	}
	bin := det.backend.binary(fp.Family, "")
	ipt, err := goipt.New(goipt.IPFamily(proto), goipt.Path(bin), goipt.Timeout(max(1, int(o.lockWait/time.Second))))
	if err != nil {
		return nil, fmt.Errorf("using %s: %w", bin, err)
	}
	prefix := fmt.Sprintf("%s %s ", fp.Family, det.backend)
	var problems []string
	for _, name := range tableOrder {
		want, planned := fp.Table(name)
		if _, exists := det.current[name]; !exists {
			if planned {
				problems = append(problems, prefix+"table "+name+" does not exist: no meshlite rules are installed in it")
			}
			continue
		}
		chains, err := ipt.ListChains(name)
		if err != nil {
			return nil, fmt.Errorf("listing %s chains with %s: %w", name, bin, err)
		}
		for _, c := range want.Chains {
			ok, err := ipt.ChainExists(name, c)
			if err != nil {
				return nil, err
			}
			if !ok {
				problems = append(problems, prefix+"missing chain "+name+"/"+c)
				continue
			}
			got, err := listSpecs(ipt, name, c)
			if err != nil {
				return nil, err
			}
			problems = append(problems, compareChain(prefix, name, c, got, want.ChainRules(c))...)
		}
		for _, c := range chains {
			switch {
			case isBuiltin(c):
				got, err := listSpecs(ipt, name, c)
				if err != nil {
					return nil, err
				}
				var ours []string
				for _, s := range got {
					if isOurs(s) {
						ours = append(ours, s)
					}
				}
				problems = append(problems, compareChain(prefix, name, c, ours, want.ChainRules(c))...)
			case slices.Contains(OwnedChains, c) && !slices.Contains(want.Chains, c):
				problems = append(problems, prefix+"leftover chain "+name+"/"+c+" is not in the plan")
			}
		}
	}
	return problems, nil
}

// listSpecs lists a chain (iptables -S) as specs without "-A CHAIN".
func listSpecs(ipt *goipt.IPTables, table, chain string) ([]string, error) {
	lines, err := ipt.List(table, chain)
	if err != nil {
		return nil, fmt.Errorf("listing %s/%s: %w", table, chain, err)
	}
	var specs []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "-A "+chain+" "); ok {
			specs = append(specs, rest)
		}
	}
	return specs, nil
}

func compareChain(prefix, table, chain string, got, want []string) []string {
	if slices.Equal(got, want) {
		return nil
	}
	var out []string
	for _, s := range want {
		if !slices.Contains(got, s) {
			out = append(out, prefix+"missing rule in "+table+": -A "+chain+" "+s)
		}
	}
	for _, s := range got {
		if !slices.Contains(want, s) {
			out = append(out, prefix+"unexpected rule in "+table+": -A "+chain+" "+s)
		}
	}
	if len(out) == 0 {
		out = append(out, prefix+"rules of "+table+"/"+chain+" are out of order or duplicated")
	}
	return out
}
