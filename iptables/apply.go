package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Option configures Install, Cleanup and Validate.
type Option func(*options)

type options struct {
	logger   *slog.Logger
	backend  Backend
	lockWait time.Duration
	retries  int
}

// WithLogger sets the logger (default slog.Default()), tagged scope=iptables.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithBackend forces a backend instead of detecting it ("" = detect).
func WithBackend(b Backend) Option { return func(o *options) { o.backend = b } }

// WithLockWait bounds how long iptables-restore waits for the xtables lock.
func WithLockWait(d time.Duration) Option { return func(o *options) { o.lockWait = d } }

// WithRetries sets how many times a failed restore is retried after
// re-reading the state (default 3).
func WithRetries(n int) Option { return func(o *options) { o.retries = n } }

func buildOptions(opts []Option) options {
	o := options{logger: slog.Default(), lockWait: 5 * time.Second, retries: 3}
	for _, opt := range opts {
		opt(&o)
	}
	o.logger = o.logger.With("scope", "iptables")
	return o
}

// Result reports what Install or Cleanup did.
type Result struct {
	Plan Plan
	// Backends is the variant used per family, with the reason.
	Backends map[Family]Backend
	Reasons  map[Family]string
	// ChangedTables lists "IPv4/nat" style names of tables that were
	// rewritten; empty when everything already matched.
	ChangedTables []string
	RoutesChanged bool
	// OtherBackendRules counts, per family, the rules and chains the other
	// backend holds in this namespace; non-zero means they may shadow ours
	// (Validate names them).
	OtherBackendRules map[Family]int
}

// Changed reports whether anything was written.
func (r Result) Changed() bool { return len(r.ChangedTables) > 0 || r.RoutesChanged }

// Install converges the namespace to the plan for cfg: it validates first
// (touching nothing on error), picks the backend per family, rewrites only
// the tables that differ with one iptables-restore --noflush each, verifies
// the result, then converges the TPROXY rules and routes.
func Install(ctx context.Context, cfg CaptureConfig, opts ...Option) (Result, error) {
	o := buildOptions(opts)
	p, err := Build(cfg)
	if err != nil {
		return Result{}, err
	}
	return converge(ctx, p, o, false)
}

// Cleanup removes everything meshlite installed (in either backend): the
// ISTIO_* chains, our rules in built-in chains, our ip rules and routes and
// the ::6 loopback address. Foreign rules are left untouched.
func Cleanup(ctx context.Context, cfg CaptureConfig, opts ...Option) (Result, error) {
	o := buildOptions(opts)
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	empty := Plan{Config: cfg}
	return converge(ctx, empty, o, true)
}

func converge(ctx context.Context, p Plan, o options, cleanup bool) (Result, error) {
	res := Result{Plan: p, Backends: map[Family]Backend{}, Reasons: map[Family]string{}, OtherBackendRules: map[Family]int{}}
	fams := map[Family]FamilyPlan{}
	for _, f := range p.Families {
		fams[f.Family] = f
	}
	all := []Family{IPv4, IPv6}
	dets := detectAll(ctx, all, o.backend)
	var jobs []*restoreJob
	for _, f := range all {
		fp, planned := fams[f]
		det := dets[f]
		if det.err != nil {
			if !planned {
				// Nothing to install for this family and no tool to
				// inspect it: nothing of ours can be there either.
				o.logger.Debug("skipping family", "family", f.String(), "err", det.err)
				continue
			}
			return res, det.err
		}
		otherOurs := cleanup && det.other != nil && det.other.hasOurs()
		if !planned && !det.current.hasOurs() && !otherOurs {
			continue
		}
		res.Backends[f], res.Reasons[f] = det.backend, det.reason
		if det.other != nil {
			res.OtherBackendRules[f] = det.other.ruleCount()
			o.logger.Warn("the other iptables backend also has rules in this namespace; they may shadow capture",
				"family", f.String(), "backend", string(det.backend.other()), "rules", det.other.ruleCount())
		}
		o.logger.Info("iptables backend selected", "family", f.String(), "backend", string(det.backend), "reason", det.reason)
		jobs = append(jobs, &restoreJob{family: f, backend: det.backend, current: det.current, want: fp})
		if otherOurs {
			jobs = append(jobs, &restoreJob{family: f, backend: det.backend.other(), current: det.other, want: FamilyPlan{Family: f}})
		}
	}
	changed, err := runRestores(ctx, jobs, o)
	res.ChangedTables = changed
	if err != nil {
		return res, err
	}
	rc, err := convergeRoutes(p, o)
	res.RoutesChanged = rc
	if err != nil {
		return res, err
	}
	if res.Changed() {
		o.logger.Info("capture converged", "tables", strings.Join(res.ChangedTables, ","), "routesChanged", res.RoutesChanged, "rules", p.RuleCount())
	} else {
		o.logger.Info("capture already in place; nothing changed", "rules", p.RuleCount())
	}
	return res, nil
}

func (rs ruleset) hasOurs() bool {
	for _, t := range rs {
		if c, r := t.owned(); len(c) > 0 || len(r) > 0 {
			return true
		}
	}
	return false
}

// restoreJob converges one family on one backend.
type restoreJob struct {
	family  Family
	backend Backend
	current ruleset
	want    FamilyPlan

	names  []string
	input  string
	cmd    *exec.Cmd
	stderr bytes.Buffer
	err    error
}

// prepare renders the restore input for the tables whose meshlite part
// differs; a re-run with the same config renders nothing.
func (j *restoreJob) prepare() {
	j.names, j.input = nil, ""
	var inputs []string
	for _, name := range tableOrder {
		want, _ := j.want.Table(name)
		want.Name = name
		if len(diffTable(name, j.current[name], want)) == 0 {
			continue
		}
		inputs = append(inputs, restoreInput(name, j.current[name], want))
		j.names = append(j.names, j.family.String()+"/"+name)
	}
	j.input = strings.Join(inputs, "")
}

func (j *restoreJob) start(ctx context.Context, o options) {
	bin := j.backend.binary(j.family, "restore")
	args := []string{"--noflush"}
	if o.lockWait > 0 {
		args = append(args, "-w", strconv.Itoa(max(1, int(o.lockWait/time.Second))))
	}
	j.stderr.Reset()
	j.cmd = exec.CommandContext(ctx, bin, args...)
	j.cmd.Stdin = strings.NewReader(j.input)
	j.cmd.Stderr = &j.stderr
	if err := j.cmd.Start(); err != nil {
		j.err = fmt.Errorf("running %s: %w", bin, err)
		j.cmd = nil
	}
}

func (j *restoreJob) wait(o options) {
	if j.cmd == nil {
		return
	}
	err := j.cmd.Wait()
	bin := j.backend.binary(j.family, "restore")
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		j.err = fmt.Errorf("%s exited %d: %s (input:\n%s)", bin, ee.ExitCode(), strings.TrimSpace(j.stderr.String()), j.input)
	case err != nil:
		j.err = fmt.Errorf("running %s: %w", bin, err)
	default:
		j.err = nil
		o.logger.Debug("iptables-restore applied", "binary", bin, "input", j.input)
	}
	j.cmd = nil
}

// runRestores applies every job with one iptables-restore --noflush per
// family and backend (each table's COMMIT is atomic). The restores run
// concurrently, all forked from the calling goroutine so they inherit its
// network namespace. A failed job re-reads its state and retries, bounded.
// Afterwards every changed family is re-read and compared with the plan.
func runRestores(ctx context.Context, jobs []*restoreJob, o options) ([]string, error) {
	var active []*restoreJob
	for _, j := range jobs {
		if j.prepare(); j.input != "" {
			active = append(active, j)
		}
	}
	if len(active) == 0 {
		return nil, nil
	}
	for _, j := range active {
		j.start(ctx, o)
	}
	for _, j := range active {
		j.wait(o)
	}
	var changed []string
	for _, j := range active {
		for attempt := 1; j.err != nil; attempt++ {
			if attempt > o.retries {
				return changed, fmt.Errorf("applying %s rules with %s failed after %d attempts: %w",
					j.family, j.backend.binary(j.family, "restore"), attempt, j.err)
			}
			o.logger.Warn("iptables-restore failed; re-reading state and retrying", "family", j.family.String(), "attempt", attempt, "err", j.err)
			select {
			case <-ctx.Done():
				return changed, ctx.Err()
			case <-time.After(time.Duration(50*attempt) * time.Millisecond):
			}
			cur, err := save(ctx, j.backend, j.family)
			if err != nil {
				return changed, err
			}
			j.current = cur
			if j.prepare(); j.input == "" {
				break
			}
			j.start(ctx, o)
			j.wait(o)
		}
		changed = append(changed, j.names...)
	}
	// Verify: re-read what was written (concurrently) and compare.
	saves := make([]*saveJob, len(active))
	for i, j := range active {
		saves[i] = &saveJob{backend: j.backend, family: j.family}
	}
	saveAll(ctx, saves)
	for i, j := range active {
		if saves[i].err != nil {
			return changed, saves[i].err
		}
		var problems []string
		for _, name := range tableOrder {
			want, _ := j.want.Table(name)
			want.Name = name
			problems = append(problems, diffTable(name, saves[i].result[name], want)...)
		}
		if len(problems) > 0 {
			return changed, fmt.Errorf("%s %s rules differ from the plan after iptables-restore: %s; "+
				"check for another controller rewriting ISTIO_* chains", j.family, j.backend, strings.Join(problems, "; "))
		}
	}
	return changed, nil
}
