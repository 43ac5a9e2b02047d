package envoy

import (
	"os"
	"strconv"
	"strings"
)

// cgroupCPUMax is cgroup v2's CPU limit file as seen from inside a container.
const cgroupCPUMax = "/sys/fs/cgroup/cpu.max"

// CgroupCPULimit is the container's CPU limit in cores, or 0 when there is no
// limit or no cgroup v2.
func CgroupCPULimit() float64 {
	data, err := os.ReadFile(cgroupCPUMax)
	if err != nil {
		return 0
	}
	return ParseCPUMax(string(data))
}

// ParseCPUMax parses cpu.max ("<quota> <period>" or "max <period>").
func ParseCPUMax(s string) float64 {
	f := strings.Fields(s)
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	quota, err1 := strconv.ParseFloat(f[0], 64)
	period, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
		return 0
	}
	return quota / period
}
