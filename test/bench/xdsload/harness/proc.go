package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPUSeconds reads a process's utime+stime from /proc (USER_HZ is 100 on Linux).
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100, nil
}

// RSS reads a process's resident set (VmRSS) and its peak (VmHWM).
func RSS(pid int) (cur, peak int64, err error) {
	m, err := Memory(pid)
	return m.RSS, m.Peak, err
}

// Mem is a process's resident memory from /proc/<pid>/status.
type Mem struct {
	RSS, Peak int64 // VmRSS, VmHWM
	// Anon is private memory (heap, stacks, runtime); File is pages of the
	// binary and other files mapped in. File grows with the linked code and
	// is shared and reclaimable, but VmRSS counts it.
	Anon, File int64
}

// String is "X MiB (anon A + file F)".
func (m Mem) String() string {
	return fmt.Sprintf("%s (anon %s + file %s)", MiB(m.RSS), MiB(m.Anon), MiB(m.File))
}

// Memory reads a process's resident memory figures.
func Memory(pid int) (Mem, error) {
	var m Mem
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.RSS = kb << 10
		case "VmHWM:":
			m.Peak = kb << 10
		case "RssAnon:":
			m.Anon = kb << 10
		case "RssFile:":
			m.File = kb << 10
		}
	}
	return m, nil
}

// LoadAvg is the 1-minute load average, printed next to figures because the
// machine may be shared.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// IOCalls reads a process's read and write system call counts (syscr and
// syscw in /proc/<pid>/io): a push costs at least one write and one read per
// client, so these show what else it costs.
func IOCalls(pid int) (reads, writes int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes, nil
}
