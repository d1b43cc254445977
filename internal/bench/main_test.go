package bench

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestMain runs the tests and benchmarks, then, if benchmarks were asked
// for (-test.bench), prints one ratio line per target from the figures
// measure recorded in this same run.
//
// How the figures are kept: the testing package runs each benchmark with
// b.N = 1, then with a growing b.N, and prints the last run. measure
// records every run under the benchmark's name without the #01, #02 the
// testing package appends to the repeats of -rounds (and -count): a b.N = 1
// run opens a new slot, later runs overwrite it, so each slot ends up
// holding a printed run. ns/op is b.Elapsed()/b.N of that run; allocations
// are the runtime.MemStats Mallocs delta around its timed loop, the count
// -benchmem prints. A ratio uses the median over the slots (make bench runs
// 3 interleaved rounds), so that one run slowed down by another process on
// the machine does not decide it.
func TestMain(m *testing.M) {
	code := m.Run()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		printRatios(os.Stdout)
	}
	os.Exit(code)
}

// result is what one benchmark run measured.
type result struct {
	nsPerOp     float64
	allocsPerOp float64
	cmdsPerOp   float64
}

// results holds the printed runs of each benchmark, by full name. It is the
// one piece of package state: benchmarks have no other way to hand figures
// to TestMain.
var results = struct {
	sync.Mutex
	m map[string][]result
}{m: make(map[string][]result)}

// record keeps the figures of a run of benchmark name with b.N = n.
func record(name string, n int, r result) {
	name = trimRepeat(name)
	results.Lock()
	defer results.Unlock()
	runs := results.m[name]
	if n == 1 || len(runs) == 0 {
		runs = append(runs, r)
	} else {
		runs[len(runs)-1] = r
	}
	results.m[name] = runs
}

// trimRepeat returns the name of a benchmark without the "#02" the
// testing package appends to its repeats (BenchmarkRead/idle/scs#02).
func trimRepeat(name string) string {
	if i := strings.LastIndexByte(name, '#'); i >= 0 && strings.Trim(name[i+1:], "0123456789") == "" {
		return name[:i]
	}
	return name
}

// pairedRatio returns the median over the printed runs of the ratio of
// num's ns/op to den's in the same run: the figure of two contenders that
// measurePaired timed together, run by run.
func pairedRatio(num, den string) (float64, bool) {
	results.Lock()
	defer results.Unlock()
	a, b := results.m[num], results.m[den]
	if len(a) == 0 || len(a) != len(b) {
		return 0, false
	}
	v := make([]float64, len(a))
	for i := range a {
		v[i] = a[i].nsPerOp / b[i].nsPerOp
	}
	return median(v), true
}

// summary returns the median ns/op and allocs/op of the printed runs of
// name and the most Redis commands per op any of them ran.
func summary(name string) (result, bool) {
	results.Lock()
	defer results.Unlock()
	runs := results.m[name]
	if len(runs) == 0 {
		return result{}, false
	}
	var s result
	ns := make([]float64, len(runs))
	allocs := make([]float64, len(runs))
	for i, r := range runs {
		ns[i], allocs[i] = r.nsPerOp, r.allocsPerOp
		s.cmdsPerOp = max(s.cmdsPerOp, r.cmdsPerOp)
	}
	s.nsPerOp, s.allocsPerOp = median(ns), median(allocs)
	return s, true
}

func median(v []float64) float64 {
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// target is a performance goal: the ratio of a sessionkit figure to a
// baseline figure measured in the same run must not exceed max.
type target struct {
	name      string
	num, den  string  // benchmark names
	allocs    bool    // compare allocations per op instead of ns per op
	max       float64 // 0: a reference (a floor), never a miss
	noCommand bool    // also MISS if num ran any Redis command
	paired    bool    // num and den were timed together: the median of their runs' ratios (pairedRatio)
}

// targets are the goals that TestMain prints;
// BenchmarkParallel, BenchmarkSessionBytes, BenchmarkRateLimit and
// BenchmarkNearCache print their own.
var targets = []target{
	{name: "read-idle-vs-scs", num: "BenchmarkRead/idle/sessionkit", den: "BenchmarkRead/idle/scs", max: 0.55},
	{name: "read-noidle-vs-scs", num: "BenchmarkRead/noidle/sessionkit", den: "BenchmarkRead/noidle/scs", max: 1.0},
	{name: "read-idle-vs-get-floor", num: "BenchmarkRead/idle/sessionkit", den: "BenchmarkRead/floor/redigo-get", max: 1.25},
	{name: "forged-vs-scs", num: "BenchmarkForgedCookie/sessionkit", den: "BenchmarkForgedCookie/scs", max: 0.12, noCommand: true},
	// scs allocates least without an idle timeout, so the allocation goal
	// is checked where it is hardest to meet.
	{name: "allocs-read-noidle-vs-scs", num: "BenchmarkRead/noidle/sessionkit", den: "BenchmarkRead/noidle/scs", allocs: true, max: 0.2},
	{name: "login-vs-scs", num: "BenchmarkLogin/paired/sessionkit", den: "BenchmarkLogin/paired/scs", max: 1.0, paired: true},
	{name: "login-one-user-vs-scs", num: "BenchmarkLoginOneUser/sessionkit", den: "BenchmarkLoginOneUser/scs"},
	// On a Redis Cluster a read stays one command and costs
	// about what it costs on one server; a login sends its commands as
	// one MULTI/EXEC (two more commands, in the same round trip).
	{name: "cluster-read-vs-one-node", num: "BenchmarkCluster/read/sessionkit-cluster", den: "BenchmarkCluster/read/sessionkit", max: 1.25},
	{name: "cluster-login-vs-one-node", num: "BenchmarkCluster/login/sessionkit-cluster", den: "BenchmarkCluster/login/sessionkit", max: 1.5},
}

// printRatios prints the ratio line of every target of the table whose
// benchmarks ran. When none ran at all (redis-server missing, so every
// benchmark skipped), it prints every target as "n/a" and MISS, so that a
// run without figures cannot pass for a good one; a run filtered with
// -bench prints only the targets it has figures for.
func printRatios(w io.Writer) {
	results.Lock()
	none := len(results.m) == 0
	results.Unlock()
	printTargets(w, targets, none)
}

// printTargets prints "ratio <name> <value> <max> ok|MISS" for each of ts
// from the medians of its benchmarks, or "ratio <name> <value> - floor" for
// a target without a max (a reference, never a miss). A target whose
// benchmarks did not run prints as "n/a" and MISS with missing, else not
// at all.
func printTargets(w io.Writer, ts []target, missing bool) {
	for _, t := range ts {
		num, ok1 := summary(t.num)
		den, ok2 := summary(t.den)
		if !ok1 || !ok2 {
			if missing && t.max > 0 {
				fmt.Fprintf(w, "ratio %s n/a %.2f MISS\n", t.name, t.max)
			}
			continue
		}
		a, b := num.nsPerOp, den.nsPerOp
		if t.allocs {
			a, b = num.allocsPerOp, den.allocsPerOp
		}
		v := a / b
		if t.paired {
			var ok bool
			if v, ok = pairedRatio(t.num, t.den); !ok {
				v = math.NaN() // runs that do not pair up: a MISS, never an ok
			}
		}
		if t.max == 0 {
			fmt.Fprintf(w, "ratio %s %.3f - floor\n", t.name, v)
			continue
		}
		verdict := "ok"
		if math.IsNaN(v) || v > t.max || (t.noCommand && num.cmdsPerOp > 0) {
			verdict = "MISS"
		}
		fmt.Fprintf(w, "ratio %s %.3f %.2f %s\n", t.name, v, t.max, verdict)
	}
}
