package redistest

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
)

// bookkeeping lists the commands the helper itself sends to read and reset
// the statistics; Calls leaves them out so that tests see only their own
// traffic. The entries are names as INFO commandstats reports them: lower
// case, subcommands as "command|subcommand".
var bookkeeping = map[string]bool{
	"info":             true,
	"config":           true,
	"config|resetstat": true,
}

// Do runs one command on a new connection and returns its reply, failing
// the test on any error, including an error reply. It is meant for setting
// up and checking state in tests (for example Do(t, "PTTL", key)); the
// command shows up in [Server.Calls] like any other.
func (s *Server) Do(t testing.TB, cmd string, args ...any) any {
	t.Helper()
	c, err := s.dial()
	if err != nil {
		t.Fatalf("redistest: dial %s: %v", s.Addr(), err)
	}
	defer c.Close()
	reply, err := c.Do(cmd, args...)
	if err != nil {
		t.Fatalf("redistest: %s: %v", cmd, err)
	}
	return reply
}

// ResetStats resets the server's statistics (CONFIG RESETSTAT), so that
// [Server.Calls] counts only the commands sent after it.
func (s *Server) ResetStats(t testing.TB) {
	t.Helper()
	s.statsDo(t, "CONFIG", "RESETSTAT")
}

// statsDo runs a bookkeeping command on the Server's stats connection,
// opened once per server process, so that with --requirepass its AUTH is
// sent once, before the statistics are reset, rather than on every call.
func (s *Server) statsDo(t testing.TB, cmd string, args ...any) any {
	t.Helper()
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if s.stats == nil {
		c, err := s.dial()
		if err != nil {
			t.Fatalf("redistest: dial %s: %v", s.Addr(), err)
		}
		s.stats = c
	}
	reply, err := s.stats.Do(cmd, args...)
	if err != nil {
		s.stats.Close()
		s.stats = nil
		t.Fatalf("redistest: %s: %v", cmd, err)
	}
	return reply
}

// closeStats closes the stats connection, if open.
func (s *Server) closeStats() {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if s.stats != nil {
		s.stats.Close()
		s.stats = nil
	}
}

// Calls returns how many times each command ran since the server started or
// since the last [Server.ResetStats], keyed by lower-case command name as
// INFO commandstats reports it ("get", "getex", "config|resetstat", ...).
// Commands that were rejected before running are not counted, and
// commands that never ran are absent rather than zero.
// The helper's own INFO and CONFIG RESETSTAT are left out, so right after
// ResetStats a single GET from the code under test gives exactly
// {"get": 1}; commands sent with [Server.Do] are counted (with
// --requirepass, each Do also counts one "auth").
func (s *Server) Calls(t testing.TB) map[string]int64 {
	t.Helper()
	info, err := redis.String(s.statsDo(t, "INFO", "commandstats"), nil)
	if err != nil {
		t.Fatalf("redistest: INFO commandstats: %v", err)
	}
	calls, err := parseCommandStats(info)
	if err != nil {
		t.Fatalf("redistest: INFO commandstats: %v", err)
	}
	return calls
}

// TotalCalls returns the sum of [Server.Calls]: the number of commands the
// server ran for anything but the helper's bookkeeping.
func (s *Server) TotalCalls(t testing.TB) int64 {
	t.Helper()
	var n int64
	for _, c := range s.Calls(t) {
		n += c
	}
	return n
}

// parseCommandStats parses the lines of INFO commandstats, such as
//
//	cmdstat_getex:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0
//
// into command name -> calls, without the bookkeeping commands.
func parseCommandStats(info string) (map[string]int64, error) {
	calls := make(map[string]int64)
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "cmdstat_")
		if !ok {
			continue // "# Commandstats" header or blank line
		}
		name, fields, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, &parseError{line}
		}
		name = strings.ToLower(name)
		if bookkeeping[name] {
			continue
		}
		var found bool
		for field := range strings.SplitSeq(fields, ",") {
			v, ok := strings.CutPrefix(field, "calls=")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, &parseError{line}
			}
			if n > 0 { // a command that only failed or was rejected
				calls[name] = n
			}
			found = true
			break
		}
		if !found {
			return nil, &parseError{line}
		}
	}
	return calls, nil
}

// parseError reports a line of INFO commandstats that does not parse.
type parseError struct{ line string }

// Error implements error.
func (e *parseError) Error() string { return "unexpected line " + strconv.Quote(e.line) }
