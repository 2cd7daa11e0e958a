//go:build unix

package ledger

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) this process has used:
// benchmarks report it besides wall time, which other work on a shared
// machine inflates.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
