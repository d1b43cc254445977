package failover_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// sentinelLoad is the traffic of the Sentinel tests: workers enough to
// keep a thousand requests a second or more going on two cores under
// -race, and users few enough that the session limit is hit, but not so
// few that the limit revokes every login made before the fault by the
// time the test checks it (the traffic logs in at about 15% of its
// requests).
var sentinelLoad = load{
	workers: 8,
	users:   200,
	limit:   3,
	stable:  40,
	warmup:  time.Second,
	after:   time.Second,
}

// sentinelManyUsers is the number of users of the logout tests: a
// resurrected session of a user who then logs in three more times is
// revoked by the limit before the test can see it come back.
const sentinelManyUsers = 2000

// sentinelTraffic returns the traffic of ld on two app instances on sn,
// with Config.WaitReplicas wait.
func sentinelTraffic(t *testing.T, sn *redistest.Sentinel, ld load, wait int) *traffic {
	t.Helper()
	return startTraffic(t, ld, redisstore.Config{
		SentinelAddrs:  sn.SentinelAddrs(),
		SentinelMaster: sn.MasterName(),
		Timeout:        time.Second,
		WaitReplicas:   wait,
	}, nil)
}

// sentinelFailover returns the fault SENTINEL FAILOVER on sn for
// traffic.run, which reports how long the failover took until the setup
// settled.
func sentinelFailover(t *testing.T, sn *redistest.Sentinel) func() time.Duration {
	return func() time.Duration {
		took := sn.Failover(t)
		t.Logf("SENTINEL FAILOVER: settled after %v", took.Round(time.Millisecond))
		return took
	}
}

// TestSentinelKillMaster: kill -9 of the master under traffic from two
// instances. Requests fail only with 503 and Retry-After while the
// Sentinels notice and promote the replica; every acknowledged login
// survives, nothing is refused, the indexes and the limit hold.
//
// With WaitReplicas 1 the promoted master has no replica to confirm
// logouts until the killed one, restarted, rejoins (the fault lasts until
// then): logouts fail with 503 meanwhile, and none acknowledged comes back.
func TestSentinelKillMaster(t *testing.T) {
	t.Parallel()
	for _, wait := range []int{0, 1} {
		name := fmt.Sprintf("WaitReplicas %d", wait)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{})
			tr := sentinelTraffic(t, sn, sentinelLoad, wait)
			fig := tr.run("Sentinel kill -9, "+name, noLoss, func() time.Duration {
				start := time.Now()
				killed, took := sn.KillMaster(t)
				t.Logf("kill -9: the Sentinels promoted the replica after %v", took.Round(time.Millisecond))
				if wait == 0 {
					return took
				}
				killed.Restart(t)
				took = sn.WaitReplica(t, killed)
				t.Logf("kill -9: the restarted master rejoined as a replica after %v", took.Round(time.Millisecond))
				return time.Since(start)
			})
			if fig.failed == 0 {
				t.Error("no request failed: did the traffic reach the killed master at all?")
			}
			if wait > 0 {
				fig.wantNoResurrection(t)
			}
		})
	}
}

// TestSentinelFailover: SENTINEL FAILOVER under traffic from two
// instances, on servers with min-replicas-to-write 1, as the package
// documentation should advise. The old master, which accepts writes until
// the Sentinels demote it, then refuses them as soon as its replica is
// promoted; without min-replicas-to-write it goes on acknowledging writes,
// which the failover loses, until the Store hears of the promotion
// (TestSentinelLogoutAcrossFailover counts them). Even with it, a write in
// flight at the promotion can be lost: the test lets the failover lose
// sessions logged in since it began (mayLoseNewSessions), counts them, and
// checks everything else strictly, the sessions from before the fault
// through their renewals included. Resurrected logouts are counted only.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t, redistest.SentinelOptions{MinReplicasToWrite: 1, MinReplicasMaxLag: time.Second})
	tr := sentinelTraffic(t, sn, sentinelLoad, 0)
	tr.run("SENTINEL FAILOVER, min-replicas-to-write 1, WaitReplicas 0", mayLoseNewSessions, sentinelFailover(t, sn))
}

// TestSentinelLogoutAcrossFailover: logouts through SENTINEL FAILOVER on
// servers without min-replicas-to-write, where the old master acknowledges
// writes that the failover loses. With WaitReplicas equal to the number of
// replicas (1 of 1, 2 of 2) no acknowledged logout comes back; with 0 the
// test reports how many did. (With 1 of 2 they do come back: the replica
// not promoted confirms them on the old master, then resyncs from the new
// one. redisstore's Config.WaitReplicas says so.)
//
// Logins and renewals do not wait for replicas (see Config.WaitReplicas):
// those acknowledged during the fault can be lost either way, and with a
// renewal the session it renewed, from before the fault or not
// (mayLoseRenewals): the test counts them, and checks the rest strictly.
func TestSentinelLogoutAcrossFailover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ replicas, wait int }{{1, 1}, {2, 2}, {1, 0}} {
		name := fmt.Sprintf("WaitReplicas %d of %d replicas", tc.wait, tc.replicas)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{Replicas: tc.replicas})
			ld := sentinelLoad
			ld.users = sentinelManyUsers
			tr := sentinelTraffic(t, sn, ld, tc.wait)
			fig := tr.run("SENTINEL FAILOVER, min-replicas-to-write 0, "+name, mayLoseRenewals, sentinelFailover(t, sn))
			if tc.wait > 0 {
				fig.wantNoResurrection(t)
			}
		})
	}
}
