package main

import (
	"flag"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/apbatch/apbatch/pipeline"
)

// defaultMemoryLimit is --memory-limit's default: none, Go's own pace.
// A limit with the slower pace below saves 5–8 % of the CPU of a batch
// without rate limits (bench raw, 200MiB: peak RSS about 260 MB), but
// workers calling the API then send less precisely on time: against the
// sandbox's sliding-window limit, 5 runs of `bench --scenario sliding` in 9
// saw 21 requests in one second and a 429 with a 200MiB limit, 1 in 9
// without (several benches side by side). It is for the roles that make no API call (ingest, write).
const defaultMemoryLimit = pipeline.DefaultMemoryLimit

// gcPercentUnderLimit is the collector's pace (GOGC) under a memory limit:
// the heap may grow to five times what is live before a collection, as long
// as it stays under the limit. Go's default (100: twice what is live)
// collects several times more often while the process uses a fraction of
// the memory it was given; the limit is what bounds memory.
const gcPercentUnderLimit = 400

const memoryLimitHelp = `memory the Go runtime aims to stay under, e.g. 400MiB, 1GiB (APBATCH_MEMORY_LIMIT); ` +
	`under it, garbage is collected less often (GOGC 400): 5-8% less CPU, but API calls leave less precisely on time ` +
	`(a sliding-window limit may see one request too many): for processes that call no API (ingest, write). ` +
	`"off" keeps Go's defaults; GOMEMLIMIT and GOGC, when set, win. In a container, about 80% of its memory limit`

// memoryLimitFlag declares --memory-limit on fs into v.
func memoryLimitFlag(fs *flag.FlagSet, getenv func(string) string, v *string) {
	def := strings.TrimSpace(getenv("APBATCH_MEMORY_LIMIT"))
	if def == "" {
		def = defaultMemoryLimit
	}
	fs.StringVar(v, "memory-limit", def, memoryLimitHelp)
}

// applyMemoryLimit sets the runtime's soft memory limit and GC pace from
// spec (see memoryLimitHelp), unless GOMEMLIMIT or GOGC is set. It returns
// the limit applied in bytes (0: none).
func applyMemoryLimit(spec string, getenv func(string) string) (int64, error) {
	n, err := parseMemoryLimit(spec)
	if err != nil {
		return 0, err
	}
	if n == 0 || getenv("GOMEMLIMIT") != "" || getenv("GOGC") != "" {
		return 0, nil
	}
	debug.SetMemoryLimit(n)
	debug.SetGCPercent(gcPercentUnderLimit)
	return n, nil
}

// parseMemoryLimit reads a size as GOMEMLIMIT writes it: an integer with an
// optional unit B, KiB, MiB, GiB or TiB; "off" or "0" is no limit.
func parseMemoryLimit(spec string) (int64, error) {
	s := strings.TrimSpace(spec)
	if s == "off" || s == "0" {
		return 0, nil
	}
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}
	shift := uint(0)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = v, u.shift
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)>>shift {
		return 0, fmt.Errorf("--memory-limit %q: want a size such as 200MiB or 1GiB, or off", spec)
	}
	if v<<shift < 32<<20 {
		return 0, fmt.Errorf("--memory-limit %q: below 32MiB, apbatch would spend its time collecting garbage", spec)
	}
	return v << shift, nil
}
