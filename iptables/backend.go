package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Backend is the iptables variant programming the kernel.
type Backend string

const (
	BackendLegacy Backend = "legacy"
	BackendNFT    Backend = "nft"
)

func (b Backend) other() Backend {
	if b == BackendLegacy {
		return BackendNFT
	}
	return BackendLegacy
}

// binary returns the variant's tool for a family, e.g. ip6tables-nft-restore.
func (b Backend) binary(f Family, tool string) string {
	name := "iptables"
	if f == IPv6 {
		name = "ip6tables"
	}
	name += "-" + string(b)
	if tool != "" {
		name += "-" + tool
	}
	return name
}

// ParseBackend accepts Istio's FORCE_IPTABLES_BINARY spellings
// (iptables-legacy, iptables-nft) and the short names.
func ParseBackend(s string) (Backend, error) {
	switch strings.TrimSpace(s) {
	case "", "auto":
		return "", nil
	case "legacy", "iptables-legacy":
		return BackendLegacy, nil
	case "nft", "iptables-nft":
		return BackendNFT, nil
	}
	return "", &FieldError{"--force-iptables-binary", s, `must be "iptables-legacy", "iptables-nft" or empty for auto-detection`}
}

// detection is the backend chosen for one family and the ruleset it saw;
// the ruleset doubles as the current state for the diff, so detection costs
// no extra exec on the hot path.
type detection struct {
	backend Backend
	reason  string
	current ruleset
	other   ruleset // the other variant's rules, nil when it has none
}

// saveJob is one <variant>-save run; jobs are started together and waited
// for together (from the calling goroutine, so every child is forked on the
// caller's thread and inherits its network namespace).
type saveJob struct {
	backend Backend
	family  Family
	cmd     *exec.Cmd
	out     bytes.Buffer
	stderr  bytes.Buffer
	result  ruleset
	err     error
}

// saveAll runs the saves concurrently. Legacy tables are only dumped when
// they already exist (listed in ip_tables_names), because touching a legacy
// table creates it, and an empty legacy nat table is what makes Istio's
// detection flip backends on the next run (istio/istio#61020).
func saveAll(ctx context.Context, jobs []*saveJob) {
	for _, j := range jobs {
		if j.backend == BackendLegacy && !legacyTablesExist(j.family) {
			j.result = ruleset{}
			continue
		}
		bin := j.backend.binary(j.family, "save")
		path, err := exec.LookPath(bin)
		if err != nil {
			j.err = fmt.Errorf("%s not found on PATH: install the iptables package (%w)", bin, err)
			continue
		}
		// No nf_tables table of this family means an empty ruleset; asking
		// the kernel directly saves a process (most of the cost of a save).
		if j.backend == BackendNFT {
			if exists, err := nftTablesExist(j.family); err == nil && !exists {
				j.result = ruleset{}
				continue
			}
		}
		j.cmd = exec.CommandContext(ctx, path)
		j.cmd.Stdout, j.cmd.Stderr = &j.out, &j.stderr
		if err := j.cmd.Start(); err != nil {
			j.err = fmt.Errorf("starting %s: %w", bin, err)
			j.cmd = nil
		}
	}
	for _, j := range jobs {
		if j.cmd == nil {
			continue
		}
		if err := j.cmd.Wait(); err != nil {
			j.err = fmt.Errorf("%s failed: %w: %s", j.cmd.Path, err, strings.TrimSpace(j.stderr.String()))
			continue
		}
		j.result = parseSave(j.out.String())
	}
}

// save runs one <variant>-save for a family and parses it.
func save(ctx context.Context, b Backend, f Family) (ruleset, error) {
	j := &saveJob{backend: b, family: f}
	saveAll(ctx, []*saveJob{j})
	return j.result, j.err
}

// nfgenmsg is the nfnetlink header of a request.
type nfgenmsg struct{ family uint8 }

func (m nfgenmsg) Len() int { return 4 }

func (m nfgenmsg) Serialize() []byte { return []byte{m.family, unix.NFNETLINK_V0, 0, 0} }

// nftTablesExist asks nf_tables, over netlink in the calling thread's
// namespace, whether any table of the family exists (iptables-nft uses the
// ip and ip6 families). It only reads.
func nftTablesExist(f Family) (bool, error) {
	fam := uint8(unix.NFPROTO_IPV4)
	if f == IPv6 {
		fam = unix.NFPROTO_IPV6
	}
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETTABLE, unix.NLM_F_DUMP)
	req.AddData(nfgenmsg{family: fam})
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	if err != nil {
		return false, err
	}
	return len(msgs) > 0, nil
}

// legacyTablesExist reads the calling thread's namespace view (thread-self,
// not self: tests and the agent may run on a thread switched into another
// network namespace).
func legacyTablesExist(f Family) bool {
	name := "ip_tables_names"
	if f == IPv6 {
		name = "ip6_tables_names"
	}
	data, err := os.ReadFile("/proc/thread-self/net/" + name)
	return err == nil && strings.TrimSpace(string(data)) != ""
}

// systemDefault is the variant the system's `iptables` command points to.
func systemDefault(ctx context.Context) (Backend, string) {
	p, err := exec.LookPath("iptables")
	if err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			switch {
			case strings.Contains(filepath.Base(real), "legacy"):
				return BackendLegacy, "iptables resolves to " + real
			case strings.Contains(filepath.Base(real), "nft"):
				return BackendNFT, "iptables resolves to " + real
			}
		}
		out, err := exec.CommandContext(ctx, p, "--version").Output()
		if err == nil && strings.Contains(string(out), "nf_tables") {
			return BackendNFT, "iptables --version reports nf_tables"
		}
		if err == nil {
			return BackendLegacy, "iptables --version reports legacy"
		}
	}
	if _, err := exec.LookPath("iptables-nft"); err == nil {
		return BackendNFT, "only iptables-nft is installed"
	}
	return BackendLegacy, "defaulting to legacy"
}

// detectAll picks the backend of each family, reading every variant's
// ruleset with concurrent saves: the override; else the variant that already
// has rules in this namespace (ours first, then anyone's); else what
// `iptables` points to. It only reads, so running it twice gives the same
// answer.
func detectAll(ctx context.Context, fams []Family, override Backend) map[Family]detectResult {
	var jobs []*saveJob
	for _, f := range fams {
		jobs = append(jobs, &saveJob{backend: BackendNFT, family: f}, &saveJob{backend: BackendLegacy, family: f})
	}
	saveAll(ctx, jobs)
	out := map[Family]detectResult{}
	for i, f := range fams {
		nft, leg := jobs[2*i], jobs[2*i+1]
		d, err := choose(ctx, override, nft.result, nft.err, leg.result, leg.err)
		if err != nil {
			err = fmt.Errorf("no usable iptables for %s: %w", f, err)
		}
		out[f] = detectResult{d, err}
	}
	return out
}

type detectResult struct {
	detection
	err error
}

// detect is detectAll for one family.
func detect(ctx context.Context, f Family, override Backend) (detection, error) {
	r := detectAll(ctx, []Family{f}, override)[f]
	return r.detection, r.err
}

func choose(ctx context.Context, override Backend, nft ruleset, nftErr error, leg ruleset, legErr error) (detection, error) {
	if override != "" {
		cur, oth, err := nft, leg, nftErr
		if override == BackendLegacy {
			cur, oth, err = leg, nft, legErr
		}
		if err != nil {
			return detection{}, err
		}
		return detection{override, "forced by --force-iptables-binary", cur, nonEmpty(oth)}, nil
	}
	switch {
	case nftErr != nil && legErr != nil:
		return detection{}, fmt.Errorf("%w; %w", nftErr, legErr)
	case nftErr != nil:
		return detection{BackendLegacy, "iptables-nft unavailable", leg, nil}, nil
	case legErr != nil:
		return detection{BackendNFT, "iptables-legacy unavailable", nft, nil}, nil
	}
	nOwned, lOwned := nft.hasOwnedChains(), leg.hasOwnedChains()
	nCount, lCount := nft.ruleCount(), leg.ruleCount()
	switch {
	case nOwned && !lOwned:
		return detection{BackendNFT, "nft already holds the ISTIO_* chains", nft, nonEmpty(leg)}, nil
	case lOwned && !nOwned:
		return detection{BackendLegacy, "legacy already holds the ISTIO_* chains", leg, nonEmpty(nft)}, nil
	case nCount > 0 && lCount == 0:
		return detection{BackendNFT, fmt.Sprintf("nft has %d rules in this namespace, legacy none", nCount), nft, nil}, nil
	case lCount > 0 && nCount == 0:
		return detection{BackendLegacy, fmt.Sprintf("legacy has %d rules in this namespace, nft none", lCount), leg, nil}, nil
	case nCount > 0 && lCount > 0:
		// Both in use: follow the system default, and let validation
		// report the other variant as a possible shadow.
		b, why := systemDefault(ctx)
		if b == BackendNFT {
			return detection{b, "both variants have rules; " + why, nft, leg}, nil
		}
		return detection{b, "both variants have rules; " + why, leg, nft}, nil
	}
	b, why := systemDefault(ctx)
	if b == BackendNFT {
		return detection{b, "namespace has no rules; " + why, nft, nil}, nil
	}
	return detection{b, "namespace has no rules; " + why, leg, nil}, nil
}

func nonEmpty(rs ruleset) ruleset {
	if rs.ruleCount() == 0 {
		return nil
	}
	return rs
}
