// Package bench holds the benchmark suite that compares sessionkit with the
// session libraries it replaces. It has no code of its own outside its tests;
// run it with "make bench".
//
// # What is measured
//
// Every contender is the same small app (read the user id, write a value,
// log in, log out) behind one session library, driven in-process: each
// operation is one http.Handler.ServeHTTP call with an httptest.ResponseRecorder
// and a request that carries the contender's own cookie. There is no network
// HTTP, so the figures compare the session layer only. The contenders are:
//
//	sessionkit   session.Manager + middleware.Sessions + redisstore.Store
//	scs          scs v2 SessionManager.LoadAndSave + scs/redisstore
//	gorilla      gorilla/sessions + boj/redistore (gob records, no idle timeout)
//	bare         a handler without sessions
//	redigo-get   a handler that sends one GET on the pool: the one-round-trip floor
//
// Each benchmark function (BenchmarkRead, BenchmarkLogin, ...) starts one
// real redis-server through internal/redistest and runs all its contenders
// against it, one after the other, each on its own redigo pool built by
// redisstore.NewPool with the same settings (64 active, 16 idle, 1s dial,
// read and write timeouts). Requests are sent one at a time: the figures are
// single-client latency, not throughput.
//
// BenchmarkCluster runs sessionkit's read and login on a Redis Cluster of
// three masters beside the same on one server (sessionkit-cluster and
// sessionkit), counting the commands of all masters.
//
// Besides ns/op and allocations, every benchmark reports redis-cmds/op, the
// number of commands Redis ran per operation (INFO commandstats, reset
// before the timed loop), and BenchmarkRecordSize reports the Redis memory
// of one session record (MEMORY USAGE) holding a user id and two small
// values.
//
// # Ratios
//
// After the benchmarks, TestMain prints one line per performance target,
//
//	ratio <name> <value> <target> ok|MISS
//
// computed from the figures of that same run (see targets in main_test.go).
// Most compare medians of separate runs; login-vs-scs compares sessionkit
// and scs timed together, in alternating blocks of logins
// (BenchmarkLogin/paired, measurePaired), since separate runs half a second
// apart moved that ratio by a third on a VM. BenchmarkLoginCommands times
// the Redis commands of the two logins alone, on a bare redigo connection,
// sessionkit's cut after each of its five, and prints each as a reference
// ratio line against scs's: where login-vs-scs's difference lies.
// docs/benchmarks.md has the figures of one run and what they mean.
package bench
