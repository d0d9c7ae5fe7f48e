package loadgen

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clkTck is USER_HZ, 100 on Linux/amd64.
const clkTck = 100

// procStat reads utime+stime+cutime+cstime (reaped children) and the parent
// pid of one process.
func procStat(pid int) (cpu time.Duration, ppid int, ok bool) {
	return procStatN(pid, 4)
}

// SelfCPU is this process's own CPU time (user+system), children excluded.
func SelfCPU() time.Duration {
	c, _, _ := procStatN(os.Getpid(), 2)
	return c
}

func procStatN(pid, nf int) (cpu time.Duration, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14 → f[11].
	if len(f) < 15 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	var t int64
	for _, s := range f[11 : 11+nf] {
		v, _ := strconv.ParseInt(s, 10, 64)
		t += v
	}
	return time.Duration(t) * time.Second / clkTck, ppid, true
}

// Tree returns pid and its live descendants.
func Tree(pid int) []int {
	ents, _ := filepath.Glob("/proc/[0-9]*")
	kids := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(filepath.Base(e))
		if err != nil {
			continue
		}
		if _, pp, ok := procStat(p); ok {
			kids[pp] = append(kids[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out) && i < 100000; i++ {
		out = append(out, kids[out[i]]...)
	}
	return out
}

// TreeCPU is the CPU time (user+system) of pid and its descendants, live and
// reaped. Resolution: 10 ms per process.
func TreeCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	var sum time.Duration
	for _, p := range Tree(pid) {
		if c, _, ok := procStat(p); ok {
			sum += c
		}
	}
	return sum
}

// TreeMem returns the proportional set size (Pss, shared pages split among
// sharers, so a forking server is not counted twice) and the RSS, in bytes,
// summed over pid and its descendants.
func TreeMem(pid int) (pss, rss int64) {
	if pid <= 0 {
		return 0, 0
	}
	for _, p := range Tree(pid) {
		pss += kbField("/proc/"+strconv.Itoa(p)+"/smaps_rollup", "Pss:")
		rss += kbField("/proc/"+strconv.Itoa(p)+"/status", "VmRSS:")
	}
	return pss, rss
}

func kbField(path, name string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v << 10
			}
		}
	}
	return 0
}

// TCPMem returns the kernel's TCP buffer memory in pages (the "mem" of
// /proc/net/sockstat, all sockets of the machine, not one network namespace)
// and the tcp_mem pressure threshold in pages (its second value). Above the
// threshold the kernel shrinks socket buffers and throughput of many bulk
// sessions collapses, whatever the proxy does. Zeros when unreadable.
func TCPMem() (pages, pressure int64) {
	if b, err := os.ReadFile("/proc/net/sockstat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "TCP:"); ok {
				f := strings.Fields(rest)
				for i := 0; i+1 < len(f); i++ {
					if f[i] == "mem" {
						pages, _ = strconv.ParseInt(f[i+1], 10, 64)
					}
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_mem"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 2 {
			pressure, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return pages, pressure
}
