// Package envoy supervises the Envoy process of one workload: it builds
// Envoy's command line, refuses to launch on a missing binary or an invalid
// bootstrap, runs Envoy in its own process group, drains it gracefully on
// shutdown, and either exits on a crash (pods: the kubelet restarts the
// container) or restarts it in place with backoff (VMs).
package envoy

import (
	"io"
	"log/slog"
	"os"
	"time"

	"k8s.io/utils/clock"
)

// Defaults, as in Istio where Istio has one.
const (
	DefaultBinaryPath               = "/usr/local/bin/envoy"
	DefaultDrainDuration            = 45 * time.Second
	DefaultTerminationDrainDuration = 5 * time.Second
	DefaultMinimumDrainDuration     = 5 * time.Second
	DefaultKillGracePeriod          = 10 * time.Second
	DefaultLogLevel                 = "warning"
	DefaultInitialBackoff           = time.Second
	DefaultMaxBackoff               = 30 * time.Second
	DefaultHealthyReset             = 5 * time.Minute
	DefaultMaxConsecutiveCrashes    = 10
	// ConnectionPollInterval is how often exit-on-zero-connections asks Envoy.
	ConnectionPollInterval = time.Second
)

// Options configure a Supervisor. ConfigPath is required; the zero value of
// every other field selects the default.
type Options struct {
	// BinaryPath is ProxyConfig.binaryPath; a bare name is looked up in PATH.
	BinaryPath string
	// ConfigPath is the bootstrap Envoy starts from (-c). It is validated
	// against Envoy's protos before every launch.
	ConfigPath string
	// ProxyType is "sidecar" (default) or "router"; a sidecar drains only its
	// inbound listeners, a gateway all of them.
	ProxyType string
	// DrainDuration is ProxyConfig.drainDuration (--drain-time-s).
	DrainDuration time.Duration
	// LogLevel is --proxyLogLevel in Istio's syntax: "warning,misc:error".
	LogLevel string
	// Concurrency is --concurrency; 0 uses the container's CPU limit.
	Concurrency int
	// IPv6 selects --local-address-ip-version v6.
	IPv6 bool
	// ExtraArgs are appended to Envoy's command line.
	ExtraArgs []string
	// Env is Envoy's environment; nil passes the agent's own.
	Env []string
	// Stdout and Stderr receive Envoy's output; nil means the agent's.
	Stdout, Stderr io.Writer

	// AdminAddress is Envoy's admin host:port; empty reads it from the
	// bootstrap.
	AdminAddress string

	// TerminationDrainDuration is how long a shutdown drains before Envoy is
	// stopped (ProxyConfig.terminationDrainDuration).
	TerminationDrainDuration time.Duration
	// ExitOnZeroActiveConnections replaces the fixed drain with: wait
	// MinimumDrainDuration, then poll until no downstream connection is left.
	ExitOnZeroActiveConnections bool
	MinimumDrainDuration        time.Duration
	// KillGracePeriod is how long Envoy has after SIGTERM before SIGKILL.
	KillGracePeriod time.Duration

	// Restart selects VM mode: a crashed Envoy is restarted in place with
	// exponential backoff instead of ending Run with an error.
	Restart               bool
	InitialBackoff        time.Duration
	MaxBackoff            time.Duration
	HealthyReset          time.Duration // uptime after which the backoff resets
	MaxConsecutiveCrashes int           // crash-loop limit; Run fails beyond it

	// CPULimit returns the container's CPU limit in cores (0: unknown); nil
	// reads cgroup v2's cpu.max.
	CPULimit func() float64

	Clock  clock.WithTicker
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.BinaryPath == "" {
		o.BinaryPath = DefaultBinaryPath
	}
	if o.ProxyType == "" {
		o.ProxyType = "sidecar"
	}
	if o.LogLevel == "" {
		o.LogLevel = DefaultLogLevel
	}
	def(&o.DrainDuration, DefaultDrainDuration)
	def(&o.TerminationDrainDuration, DefaultTerminationDrainDuration)
	def(&o.MinimumDrainDuration, DefaultMinimumDrainDuration)
	def(&o.KillGracePeriod, DefaultKillGracePeriod)
	def(&o.InitialBackoff, DefaultInitialBackoff)
	def(&o.MaxBackoff, DefaultMaxBackoff)
	def(&o.HealthyReset, DefaultHealthyReset)
	if o.MaxConsecutiveCrashes == 0 {
		o.MaxConsecutiveCrashes = DefaultMaxConsecutiveCrashes
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.CPULimit == nil {
		o.CPULimit = CgroupCPULimit
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Logger = o.Logger.With("scope", "envoy")
	return o
}
