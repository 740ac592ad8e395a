package loadtest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// Procs is GOMAXPROCS of the runner.
func Procs() int { return runtime.GOMAXPROCS(0) }

// Machine describes the CPU and memory the numbers were taken on, for the report header.
func Machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kib int64
				fmt.Sscan(strings.TrimSpace(rest), &kib)
				mem = fmt.Sprintf(", %.0f GiB RAM", float64(kib)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s/%s, %s", runtime.NumCPU(), cpu, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
