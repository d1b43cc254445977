package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/gomodule/redigo/redis"
)

// TestClassify checks the mapping of every reply code; TestErrorClasses
// provokes most of them on real servers.
func TestClassify(t *testing.T) {
	tests := []struct {
		err     error
		want    error
		cluster bool // on a Redis Cluster
	}{
		{redis.Error("LOADING Redis is loading the dataset in memory"), ErrUnavailable, false},
		{redis.Error("READONLY You can't write against a read only replica."), ErrUnavailable, false},
		{redis.Error("OOM command not allowed when used memory > 'maxmemory'."), ErrUnavailable, false},
		{redis.Error("MASTERDOWN Link with MASTER is down"), ErrUnavailable, false},
		{redis.Error("BUSY Redis is busy running a script."), ErrUnavailable, false},
		{redis.Error("TRYAGAIN Multiple keys request during rehashing of slot"), ErrUnavailable, true},
		{redis.Error("CLUSTERDOWN The cluster is down"), ErrUnavailable, true},
		{redis.Error("MOVED 3999 127.0.0.1:6381"), ErrUnavailable, true},
		{redis.Error("ASK 3999 127.0.0.1:6381"), ErrUnavailable, true},
		{redis.Error("EXECABORT Transaction discarded because of previous errors."), ErrUnavailable, true},
		// A Cluster node behind a single-server or Sentinel configuration:
		// no retry mends that.
		{redis.Error("TRYAGAIN Multiple keys request during rehashing of slot"), ErrRefused, false},
		{redis.Error("CLUSTERDOWN The cluster is down"), ErrRefused, false},
		{redis.Error("MOVED 3999 127.0.0.1:6381"), ErrRefused, false},
		{redis.Error("ASK 3999 127.0.0.1:6381"), ErrRefused, false},
		// A transaction with a command refused as it was queued (OOM).
		{redis.Error("EXECABORT Transaction discarded because of previous errors."), ErrUnavailable, false},
		{redis.Error("NOREPLICAS Not enough good replicas to write."), ErrUnavailable, false},
		{io.EOF, ErrUnavailable, false},
		{redis.Error("NOAUTH Authentication required."), ErrRefused, false},
		{redis.Error("WRONGPASS invalid username-password pair"), ErrRefused, false},
		{redis.Error("NOPERM this user has no permissions"), ErrRefused, false},
		{redis.Error("WRONGTYPE Operation against a key holding the wrong kind of value"), ErrRefused, false},
		{redis.Error("ERR unknown command 'GETEX'"), ErrRefused, false},
	}
	if got := classify("op", ErrContention, false); !errors.Is(got, ErrContention) || errors.Is(got, ErrUnavailable) {
		t.Errorf("classify(ErrContention) = %v, want ErrContention and not ErrUnavailable", got)
	}
	// Only a caller cancels: a client gone says nothing about Redis.
	canceled := fmt.Errorf("%w: read tcp: use of closed connection", context.Canceled)
	if got := classify("op", canceled, false); !errors.Is(got, context.Canceled) ||
		errors.Is(got, ErrUnavailable) || errors.Is(got, ErrRefused) || errors.Is(got, ErrContention) {
		t.Errorf("classify(%q) = %v, want context.Canceled and no class", canceled, got)
	}
	for _, tc := range tests {
		if got := classify("op", tc.err, tc.cluster); !errors.Is(got, tc.want) || !errors.Is(got, tc.err) {
			t.Errorf("classify(%q) on a Cluster %v = %v, want %v wrapping the cause", tc.err, tc.cluster, got, tc.want)
		}
	}
}
