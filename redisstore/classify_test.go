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
		err  error
		want error
	}{
		{redis.Error("LOADING Redis is loading the dataset in memory"), ErrUnavailable},
		{redis.Error("READONLY You can't write against a read only replica."), ErrUnavailable},
		{redis.Error("OOM command not allowed when used memory > 'maxmemory'."), ErrUnavailable},
		{redis.Error("MASTERDOWN Link with MASTER is down"), ErrUnavailable},
		{redis.Error("BUSY Redis is busy running a script."), ErrUnavailable},
		{redis.Error("TRYAGAIN Multiple keys request during rehashing of slot"), ErrUnavailable},
		{redis.Error("CLUSTERDOWN The cluster is down"), ErrUnavailable},
		{redis.Error("NOREPLICAS Not enough good replicas to write."), ErrUnavailable},
		{io.EOF, ErrUnavailable},
		{redis.Error("NOAUTH Authentication required."), ErrRefused},
		{redis.Error("WRONGPASS invalid username-password pair"), ErrRefused},
		{redis.Error("NOPERM this user has no permissions"), ErrRefused},
		{redis.Error("WRONGTYPE Operation against a key holding the wrong kind of value"), ErrRefused},
		{redis.Error("ERR unknown command 'GETEX'"), ErrRefused},
	}
	if got := classify("op", ErrContention); !errors.Is(got, ErrContention) || errors.Is(got, ErrUnavailable) {
		t.Errorf("classify(ErrContention) = %v, want ErrContention and not ErrUnavailable", got)
	}
	// Only a caller cancels: a client gone says nothing about Redis.
	canceled := fmt.Errorf("%w: read tcp: use of closed connection", context.Canceled)
	if got := classify("op", canceled); !errors.Is(got, context.Canceled) ||
		errors.Is(got, ErrUnavailable) || errors.Is(got, ErrRefused) || errors.Is(got, ErrContention) {
		t.Errorf("classify(%q) = %v, want context.Canceled and no class", canceled, got)
	}
	for _, tc := range tests {
		if got := classify("op", tc.err); !errors.Is(got, tc.want) || !errors.Is(got, tc.err) {
			t.Errorf("classify(%q) = %v, want %v wrapping the cause", tc.err, got, tc.want)
		}
	}
}
