package envoy

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// envoyLevels are the levels Envoy's -l accepts.
var envoyLevels = map[string]bool{"trace": true, "debug": true, "info": true, "warning": true, "error": true, "critical": true, "off": true}

// ParseLogLevel splits Istio's --proxyLogLevel syntax ("warning,misc:error,
// upstream:debug") into Envoy's -l level and --component-log-level value.
// "warn" is accepted for "warning", as Istio does.
func ParseLogLevel(s string) (level, components string, err error) {
	var comps []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, lvl, isComp := strings.Cut(part, ":")
		if !isComp {
			lvl, name = name, ""
		}
		if lvl == "warn" {
			lvl = "warning"
		}
		if !envoyLevels[lvl] {
			return "", "", fmt.Errorf("proxy log level %q in %q is not one of trace, debug, info, warning, error, critical, off", lvl, s)
		}
		if !isComp {
			if level != "" {
				return "", "", fmt.Errorf("proxy log level %q sets the global level twice: give one bare level and component:level pairs", s)
			}
			level = lvl
			continue
		}
		if name == "" {
			return "", "", fmt.Errorf("proxy log level %q has a component level with no component name", s)
		}
		comps = append(comps, name+":"+lvl)
	}
	return level, strings.Join(comps, ","), nil
}

// Concurrency is the worker count Envoy gets: the configured value, else the
// CPU limit rounded up, else the machine's CPUs.
func Concurrency(configured int, cpuLimit float64) int {
	if configured > 0 {
		return configured
	}
	if cpuLimit > 0 {
		return int(math.Ceil(cpuLimit))
	}
	return runtime.NumCPU()
}

// Args is Envoy's command line (without the binary) for o.
func Args(o Options) ([]string, error) {
	o = o.withDefaults()
	level, comps, err := ParseLogLevel(o.LogLevel)
	if err != nil {
		return nil, err
	}
	ipVersion := "v4"
	if o.IPv6 {
		ipVersion = "v6"
	}
	args := []string{
		"-c", o.ConfigPath,
		"--drain-time-s", strconv.Itoa(seconds(o.DrainDuration)),
		"--drain-strategy", "immediate",
		"--local-address-ip-version", ipVersion,
		"--file-flush-interval-msec", "1000",
		"--disable-hot-restart",
		"--allow-unknown-static-fields",
	}
	if level != "" {
		args = append(args, "-l", level)
	}
	if comps != "" {
		args = append(args, "--component-log-level", comps)
	}
	args = append(args, "--concurrency", strconv.Itoa(Concurrency(o.Concurrency, o.CPULimit())))
	return append(args, o.ExtraArgs...), nil
}

// seconds rounds up so a sub-second drain is not turned into "no drain".
func seconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}
