// Command testsummary runs go test in one or more module directories and
// prints what plain go test prints (one line per package, and the output of
// failing tests), plus how many tests passed, failed and were skipped: per
// package, on its "ok" line, and in total at the end. The Makefile's test
// targets use it so that skipped tests (the real-Redis suites without a
// redis-server) cannot go unnoticed.
//
//	testsummary [-C dir]... -- go test [flags] [packages]
//
// It adds -json to the go test command line, runs it in each directory in
// turn (the current one without -C), and exits 1 if any run failed.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events
	Test       string
	Output     string
}

// counts are the tests and subtests that passed, failed and were skipped.
type counts struct{ pass, fail, skip int }

func (c *counts) add(o counts) { c.pass += o.pass; c.fail += o.fail; c.skip += o.skip }

type dirs []string

func (d *dirs) String() string     { return strings.Join(*d, ",") }
func (d *dirs) Set(v string) error { *d = append(*d, v); return nil }

func main() {
	var ds dirs
	flag.Var(&ds, "C", "run the command in this directory (repeatable)")
	flag.Parse()
	args := flag.Args()
	if len(args) < 2 || args[1] != "test" {
		fmt.Fprintln(os.Stderr, "usage: testsummary [-C dir]... -- go test [flags] [packages]")
		os.Exit(2)
	}
	if len(ds) == 0 {
		ds = dirs{"."}
	}
	cmdline := slices.Concat(args[:2], []string{"-json"}, args[2:])

	var total counts
	failed := false
	for _, dir := range ds {
		c, err := run(dir, cmdline, os.Stdout)
		total.add(c)
		if err != nil {
			fmt.Fprintf(os.Stdout, "testsummary: %s: %v\n", dir, err)
			failed = true
		}
	}
	fmt.Printf("tests (subtests included): %d passed, %d failed, %d skipped\n", total.pass, total.fail, total.skip)
	if failed || total.fail > 0 {
		os.Exit(1)
	}
}

// run runs cmdline in dir, writes the summary of its JSON output to w and
// returns the counts; the error is the command's, if it failed.
func run(dir string, cmdline []string, w io.Writer) (counts, error) {
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return counts{}, err
	}
	if err := cmd.Start(); err != nil {
		return counts{}, err
	}
	c := summarize(out, w)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return c, fmt.Errorf("%s exited with status %d", strings.Join(cmdline, " "), exit.ExitCode())
		}
		return c, err
	}
	return c, nil
}

// summarize reads go test -json events from r and writes to w: the output of
// builds, of failed tests and of tests still running when their package
// ended (a panic, a timeout), each package's own lines but "PASS", with the
// "ok" line extended by the package's skip count. Lines that are not JSON
// are copied as they are.
func summarize(r io.Reader, w io.Writer) counts {
	var total counts
	type testKey struct{ pkg, test string }
	buffered := map[testKey][]string{} // output of running tests
	started := map[string][]string{}   // running tests by package, in order
	pkgCounts := map[string]*counts{}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		if e.Action == "build-output" {
			io.WriteString(w, e.Output)
			continue
		}
		pc := pkgCounts[e.Package]
		if pc == nil {
			pc = &counts{}
			pkgCounts[e.Package] = pc
		}
		if e.Test == "" {
			switch {
			case e.Action != "output":
				if e.Action == "fail" {
					// Whatever was running when the package failed never
					// finished: show it.
					for _, t := range started[e.Package] {
						k := testKey{e.Package, t}
						if out, ok := buffered[k]; ok {
							io.WriteString(w, strings.Join(out, ""))
							delete(buffered, k)
						}
					}
				}
				delete(started, e.Package)
			case e.Output == "PASS\n":
			case strings.HasPrefix(e.Output, "ok ") && pc.skip > 0:
				fmt.Fprintf(w, "%s (%d skipped)\n", strings.TrimSuffix(e.Output, "\n"), pc.skip)
			default:
				io.WriteString(w, e.Output)
			}
			continue
		}
		k := testKey{e.Package, e.Test}
		switch e.Action {
		case "run":
			buffered[k] = nil
			started[e.Package] = append(started[e.Package], e.Test)
		case "output":
			if !isFrame(e.Output) {
				buffered[k] = append(buffered[k], e.Output)
			}
		case "pass", "skip", "fail":
			c := counts{}
			switch e.Action {
			case "pass":
				c.pass = 1
			case "skip":
				c.skip = 1
			case "fail":
				c.fail = 1
				io.WriteString(w, strings.Join(buffered[k], ""))
			}
			pc.add(c)
			total.add(c)
			delete(buffered, k)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testsummary: reading go test output: %v\n", err)
		total.fail++
	}
	return total
}

// isFrame reports whether a line of a test's output is one of go test -v's
// progress lines, which plain go test does not print.
func isFrame(s string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
