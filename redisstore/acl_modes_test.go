package redisstore_test

// Tests of the per-mode ACL additions the package documentation gives for
// Sentinel ("+role") and WaitReplicas ("+wait"), and of the commands it says
// the sentinels are asked, on real servers started by internal/redistest.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/redisstore"
)

// Credentials of the ACL tests: the default users' passwords (which the
// helpers, the replica and the sentinels use among themselves) and those of
// the restricted users the Store logs in as.
const (
	aclModesDataPassword     = "acl-data-default-pw-71c2"
	aclModesSentinelPassword = "acl-snt-default-pw-0b9e"
	aclModesUserPassword     = "acl-user-pw-5e3d"
	aclModesMasterName       = "aclmodes"
	aclModesDataUser         = "sessionkit"
	aclModesSentinelUser     = "sessionkit-snt"
)

// aclModesSentinelRules are the sentinels' ACL rules for a Store: exactly
// the commands the package documentation says it asks them, and the two
// channels it subscribes to.
var aclModesSentinelRules = []string{
	"resetchannels", "&+switch-master", "&+promoted-slave", "-@all",
	"+sentinel|get-master-addr-by-name", "+subscribe", "+ping",
}

// aclModesSetUser creates (or resets) the ACL user name with rules on each
// of servers and empties their ACL LOG.
func aclModesSetUser(t *testing.T, servers []*redistest.Server, name string, rules []string) {
	t.Helper()
	args := append([]any{"SETUSER", name, "reset", "on", ">" + aclModesUserPassword}, anys(rules)...)
	for _, s := range servers {
		s.Do(t, "ACL", args...)
		s.Do(t, "ACL", "LOG", "RESET")
	}
}

// aclModesNoDenials fails the test for every entry in the ACL LOG of
// servers: a command, key or channel the Store was denied.
func aclModesNoDenials(t *testing.T, what string, servers []*redistest.Server) {
	t.Helper()
	for _, s := range servers {
		entries, err := redis.Values(s.Do(t, "ACL", "LOG"), nil)
		if err != nil {
			t.Fatalf("%s %s: ACL LOG: %v", what, s.Addr(), err)
		}
		for _, e := range entries {
			f := aclEntry(e)
			t.Errorf("%s %s denied %s %q to %s (reason %s)", what, s.Addr(), f["context"], f["object"], f["username"], f["reason"])
		}
	}
}

// aclModesOpen opens a Store on sn as the data-node user dataUser and the
// sentinel user sntUser (both with aclModesUserPassword), closed at
// cleanup.
func aclModesOpen(t *testing.T, sn *redistest.Sentinel, dataUser, sntUser string, waitReplicas int) *redisstore.Store {
	t.Helper()
	return aclModesOpenLogged(t, sn, dataUser, sntUser, waitReplicas, nil)
}

// aclModesOpenLogged is aclModesOpen with the Store's Logger.
func aclModesOpenLogged(t *testing.T, sn *redistest.Sentinel, dataUser, sntUser string, waitReplicas int, logger *slog.Logger) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(redisstore.Config{
		Logger:           logger,
		SentinelAddrs:    sn.SentinelAddrs(),
		SentinelMaster:   sn.MasterName(),
		SentinelUsername: sntUser,
		SentinelPassword: aclModesUserPassword,
		Username:         dataUser,
		Password:         aclModesUserPassword,
		WaitReplicas:     waitReplicas,
		Timeout:          2 * time.Second,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// aclModesNoSecret fails the test if err's text holds a password.
func aclModesNoSecret(t *testing.T, what string, err error) {
	t.Helper()
	for _, pw := range []string{aclModesDataPassword, aclModesSentinelPassword, aclModesUserPassword} {
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("%s: error %q contains a password", what, err)
		}
	}
}

// TestSentinelACL runs every Store operation under Sentinel with
// WaitReplicas 1, as an ACL user that has exactly the commands of the
// package documentation's ACL SETUSER example plus the two it names for
// Sentinel and WaitReplicas (+role, +wait), on the master and the replica,
// and asks the sentinels as a user that may only run what the
// documentation says they are asked. Nothing may be denied (ACL LOG empty
// on every server). Then it shows that a data-node user without +role gets
// no connection, and that this is a refusal (ErrRefused), which no retry
// mends, not an outage.
func TestSentinelACL(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t, redistest.SentinelOptions{
		MasterName:       aclModesMasterName,
		Password:         aclModesDataPassword,
		SentinelPassword: aclModesSentinelPassword,
	})
	master, replica := sn.Master(t), sn.Replica(t)
	data := []*redistest.Server{master, replica}
	sentinels := sn.Sentinels()

	base := aclCommands(t)
	rules := append(slices.Clone(base), "+role", "+wait")
	t.Logf("data nodes: ACL SETUSER %s >... %s", aclModesDataUser, strings.Join(rules, " "))
	t.Logf("sentinels:  ACL SETUSER %s >... %s", aclModesSentinelUser, strings.Join(aclModesSentinelRules, " "))
	aclModesSetUser(t, data, aclModesDataUser, rules)
	aclModesSetUser(t, sentinels, aclModesSentinelUser, aclModesSentinelRules)

	ctx := context.Background()
	s := aclModesOpen(t, sn, aclModesDataUser, aclModesSentinelUser, 1)
	d := deadlines(4)
	same := func(cur []byte) ([]byte, error) { return cur, nil }
	user := "alice"
	us := func(id string, deadline time.Time) redisstore.UserSession {
		return redisstore.UserSession{UserID: user, ID: id, Record: []byte("rec-" + id), TTL: time.Hour, Deadline: deadline}
	}
	calls := []struct {
		name string
		f    func() error
	}{
		{"Ping", func() error { return s.Ping(ctx) }},
		{"Insert", func() error {
			ok, err := s.Insert(ctx, "anon", []byte("a"), time.Minute)
			if err == nil && !ok {
				err = errors.New("did not write")
			}
			return err
		}},
		{"Load", func() error {
			rec, found, err := s.Load(ctx, "anon", 0)
			if err == nil && (!found || string(rec) != "a") {
				err = fmt.Errorf("got %q, %v", rec, found)
			}
			return err
		}},
		{"Load ttl", func() error {
			_, found, err := s.Load(ctx, "anon", time.Hour)
			if err == nil && !found {
				err = errors.New("not found")
			}
			return err
		}},
		{"Update", func() error {
			ok, err := s.Update(ctx, "anon", []byte("b"), time.Minute)
			if err == nil && !ok {
				err = errors.New("did not write")
			}
			return err
		}},
		{"Merge", func() error {
			ok, err := s.Merge(ctx, "anon", time.Minute, func(cur []byte) ([]byte, error) { return append(cur, 'c'), nil })
			if err == nil && !ok {
				err = errors.New("did not write")
			}
			return err
		}},
		{"AddUserSession replacing", func() error {
			a := us("s1", d[0])
			a.Replaces = "anon"
			_, err := s.AddUserSession(ctx, a)
			return err
		}},
		{"AddUserSession", func() error { _, err := s.AddUserSession(ctx, us("s2", d[1])); return err }},
		{"AddUserSession limit", func() error {
			a := us("s3", d[2])
			a.Limit = 2
			revoked, err := s.AddUserSession(ctx, a)
			if err == nil && !slices.Equal(revoked, []string{"s1"}) {
				err = fmt.Errorf("revoked %q, want [s1]", revoked)
			}
			return err
		}},
		{"AddUserSession limit replacing", func() error {
			a := us("s4", d[3])
			a.Limit = 2
			a.Replaces = "s3"
			ended, err := s.AddUserSession(ctx, a)
			if err == nil && !slices.Equal(ended, []string{"s3"}) {
				err = fmt.Errorf("ended %q, want only the replaced s3", ended)
			}
			return err
		}},
		{"MoveSession", func() error {
			moved, err := s.MoveSession(ctx, redisstore.Move{UserID: user, From: "s4", To: "s5", TTL: time.Hour, Deadline: d[3], Merge: same})
			if err == nil && !moved {
				err = errors.New("did not move")
			}
			return err
		}},
		{"MoveSession anonymous", func() error {
			if _, err := s.Insert(ctx, "anon2", []byte("a"), time.Minute); err != nil {
				return err
			}
			moved, err := s.MoveSession(ctx, redisstore.Move{From: "anon2", To: "anon3", TTL: time.Minute, Merge: same})
			if err == nil && !moved {
				err = errors.New("did not move")
			}
			return err
		}},
		{"UserSessions", func() error {
			ids, _, err := s.UserSessions(ctx, user)
			if err == nil && !slices.Equal(ids, []string{"s2", "s5"}) {
				err = fmt.Errorf("got %q, want [s2 s5]", ids)
			}
			return err
		}},
		{"RemoveUserSession", func() error {
			removed, err := s.RemoveUserSession(ctx, user, "s2")
			if err == nil && !removed {
				err = errors.New("removed nothing")
			}
			return err
		}},
		{"RemoveUserSession anonymous", func() error {
			removed, err := s.RemoveUserSession(ctx, "", "anon3")
			if err == nil && !removed {
				err = errors.New("removed nothing")
			}
			return err
		}},
		{"RemoveUserSessions keep", func() error {
			if _, err := s.AddUserSession(ctx, us("s6", d[0])); err != nil {
				return err
			}
			ended, err := s.RemoveUserSessions(ctx, user, "s5")
			if err == nil && !slices.Equal(ended, []string{"s6"}) {
				err = fmt.Errorf("ended %q, want [s6]", ended)
			}
			return err
		}},
		{"RemoveUserSessions", func() error {
			ended, err := s.RemoveUserSessions(ctx, user, "")
			if err == nil && !slices.Equal(ended, []string{"s5"}) {
				err = fmt.Errorf("ended %q, want [s5]", ended)
			}
			return err
		}},
		{"Remove", func() error {
			if _, err := s.Insert(ctx, "anon4", []byte("a"), time.Minute); err != nil {
				return err
			}
			return s.Remove(ctx, "anon4")
		}},
		{"Iterate", func() error {
			if _, err := s.Insert(ctx, "anon5", []byte("a"), time.Minute); err != nil {
				return err
			}
			var seen []string
			err := s.Iterate(ctx, func(id string, _ []byte) error { seen = append(seen, id); return nil })
			if err == nil && !slices.Contains(seen, "anon5") {
				err = fmt.Errorf("visited %q, want anon5 among them", seen)
			}
			return err
		}},
	}
	for _, call := range calls {
		if err := call.f(); err != nil {
			t.Errorf("%s as the documented ACL user (+role +wait, WaitReplicas 1): %v", call.name, err)
		}
	}
	// The calls that end sessions waited for the replica.
	if n := master.Calls(t)["wait"]; n == 0 {
		t.Error("no WAIT reached the master: WaitReplicas 1 did not apply, so +wait was not exercised")
	}
	if got, _ := redis.Int(master.Do(t, "EXISTS", "session:anon4"), nil); got != 0 {
		t.Error("session:anon4 survived Remove")
	}
	// The Store subscribed to +switch-master and +promoted-slave on a
	// sentinel as the restricted user (CLIENT LIST's sub=2).
	if !aclModesSubscribed(t, sentinels, aclModesSentinelUser, 2) {
		t.Error("no sentinel lists the two subscriptions of the restricted sentinel user")
	}
	aclModesNoDenials(t, "data node", data)
	aclModesNoDenials(t, "sentinel", sentinels)

	t.Run("without +role", func(t *testing.T) {
		const name = "sessionkit-norole"
		aclModesSetUser(t, data, name, slices.DeleteFunc(slices.Clone(rules), func(r string) bool { return r == "+role" }))
		s := aclModesOpen(t, sn, name, aclModesSentinelUser, 0)
		for _, call := range []struct {
			name string
			f    func() error
		}{
			{"Ping", func() error { return s.Ping(ctx) }},
			{"Load", func() error { _, _, err := s.Load(ctx, "anon", time.Minute); return err }},
			{"Insert", func() error { _, err := s.Insert(ctx, "norole", []byte("a"), time.Minute); return err }},
		} {
			err := call.f()
			if err == nil {
				t.Fatalf("%s without +role succeeded: the permission the documentation asks for is not needed", call.name)
			}
			t.Logf("%s without +role: %v", call.name, err)
			if !errors.Is(err, redisstore.ErrRefused) || errors.Is(err, redisstore.ErrUnavailable) {
				t.Errorf("%s without +role = %v, want ErrRefused (NOPERM will not go away by itself), not ErrUnavailable", call.name, err)
			}
			if !strings.Contains(err.Error(), "NOPERM") {
				t.Errorf("%s without +role = %v, want the NOPERM reply as its cause", call.name, err)
			}
			aclModesNoSecret(t, call.name, err)
		}
		if n, _ := redis.Int(master.Do(t, "EXISTS", "session:norole"), nil); n != 0 {
			t.Error("a write went through a connection whose ROLE check was denied")
		}
	})

	// A NOPERM reply, to WAIT or from the sentinels to SENTINEL
	// get-master-addr-by-name, is a refusal, as the package documentation
	// promises.
	t.Run("without +wait", func(t *testing.T) {
		const name = "sessionkit-nowait"
		aclModesSetUser(t, data, name, slices.DeleteFunc(slices.Clone(rules), func(r string) bool { return r == "+wait" }))
		s := aclModesOpen(t, sn, name, aclModesSentinelUser, 1)
		if _, err := s.Insert(ctx, "nowait", []byte("a"), time.Minute); err != nil {
			t.Fatalf("Insert without +wait (logins do not wait): %v", err)
		}
		err := s.Remove(ctx, "nowait")
		t.Logf("Remove without +wait: %v", err)
		if !errors.Is(err, redisstore.ErrRefused) || errors.Is(err, redisstore.ErrUnavailable) {
			t.Errorf("Remove with WaitReplicas 1 without +wait = %v, want ErrRefused (NOPERM will not go away by itself), not ErrUnavailable", err)
		}
		// Ping says so before any logout fails: a readiness probe sees it.
		err = s.Ping(ctx)
		if !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(err.Error(), "WAIT") {
			t.Errorf("Ping with WaitReplicas 1 without +wait = %v, want ErrRefused naming WAIT", err)
		}
		want := "the ACL of user " + name + " denies WAIT, which sessionkit sends with REDIS_WAIT_REPLICAS (Config.WaitReplicas) so that logouts wait for the replicas: add +wait"
		if got := redisstore.Describe(err, redisstore.Config{Username: name}); got != want {
			t.Errorf("Describe(%v) = %q, want %q", err, got, want)
		}
	})
	// A sentinel user denied one of the two channels: the Store still
	// follows the other, and warns, naming the channel.
	for _, channel := range []string{"+promoted-slave", "+switch-master"} {
		t.Run("sentinel user without "+channel, func(t *testing.T) {
			name := "sessionkit-snt-no" + strings.TrimPrefix(channel, "+")
			aclModesSetUser(t, sentinels, name, slices.DeleteFunc(slices.Clone(aclModesSentinelRules), func(r string) bool {
				return r == "&"+channel
			}))
			logs := new(syncbuf.Buffer)
			s := aclModesOpenLogged(t, sn, aclModesDataUser, name, 0, slog.New(slog.NewTextHandler(logs, nil)))
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping as a sentinel user without the channel %s: %v", channel, err)
			}
			if !aclModesSubscribed(t, sentinels, name, 1) {
				t.Errorf("no sentinel lists the one subscription left to a user denied %s", channel)
			}
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "channel="+channel); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no warning naming the denied channel; logs:\n%s", logs)
				}
			}
			t.Logf("warning: %s", logs)
			if !strings.Contains(logs.String(), "user="+name) {
				t.Errorf("the warning does not name the sentinel user %s: %s", name, logs)
			}
		})
	}
	t.Run("sentinel user without either channel", func(t *testing.T) {
		// Nothing to subscribe to: each channel gets its warning, and
		// the Store still follows the sentinels by polling them.
		const name = "sessionkit-snt-nochannels"
		aclModesSetUser(t, sentinels, name, slices.DeleteFunc(slices.Clone(aclModesSentinelRules), func(r string) bool {
			return strings.HasPrefix(r, "&")
		}))
		logs := new(syncbuf.Buffer)
		s := aclModesOpenLogged(t, sn, aclModesDataUser, name, 0, slog.New(slog.NewTextHandler(logs, nil)))
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping as a sentinel user without either channel: %v", err)
		}
		for _, channel := range []string{"+switch-master", "+promoted-slave"} {
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "channel="+channel); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no warning naming the denied channel %s; logs:\n%s", channel, logs)
				}
			}
		}
	})
	t.Run("sentinel user without get-master-addr-by-name", func(t *testing.T) {
		const name = "sessionkit-snt-noquery"
		aclModesSetUser(t, sentinels, name, slices.DeleteFunc(slices.Clone(aclModesSentinelRules), func(r string) bool {
			return r == "+sentinel|get-master-addr-by-name"
		}))
		s := aclModesOpen(t, sn, aclModesDataUser, name, 0)
		err := s.Ping(ctx)
		t.Logf("Ping as a sentinel user that may not ask for the master: %v", err)
		if !errors.Is(err, redisstore.ErrRefused) || errors.Is(err, redisstore.ErrUnavailable) {
			t.Errorf("Ping as a sentinel user without SENTINEL get-master-addr-by-name = %v, want ErrRefused, not ErrUnavailable", err)
		}
		aclModesNoSecret(t, "Ping", err)
	})
}

// TestUsernameWithoutPassword configures a username and no password, as
// REDIS_USERNAME alone or "redis://app:@host" do: every connection, on
// one server (with a database, selected after AUTH), on a Sentinel's
// master (and to the sentinels, as SentinelUsername without
// SentinelPassword) and on every Cluster node, authenticates as that user, which
// with "nopass" accepts the empty password, and never runs as "default",
// whether the default user is open (no requirepass: it would have every
// permission) or locked. A user that has a password refuses it: Ping fails
// with ErrRefused, and Describe names the credentials' settings.
func TestUsernameWithoutPassword(t *testing.T) {
	ctx := context.Background()
	const locked = "default-pw-2d7a"
	nopassUser := []any{"SETUSER", "app", "reset", "on", "nopass", "~*", "+@all"}
	whoami := func(t *testing.T, servers []*redistest.Server) {
		t.Helper()
		n := 0
		for _, srv := range servers {
			clients, err := redis.String(srv.Do(t, "CLIENT", "LIST"), nil)
			if err != nil {
				t.Fatal(err)
			}
			for line := range strings.Lines(clients) {
				if !strings.Contains(line, " cmd=getex ") && !strings.Contains(line, " cmd=discard ") {
					continue // not the Store's
				}
				n++
				if !strings.Contains(line, " user=app ") {
					t.Errorf("%s: a connection of the Store runs as another user than app: %s", srv.Addr(), line)
				}
			}
		}
		if n == 0 {
			t.Error("no connection of the Store found")
		}
	}

	for _, args := range [][]string{nil, {"--requirepass", locked}} {
		name := "default user open"
		if args != nil {
			name = "default user locked"
		}
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t, args...)
			srv.Do(t, "ACL", nopassUser...)
			cfg := redisstore.Config{Addr: srv.Addr(), Username: "app", DB: 1}
			pool, err := redisstore.NewPool(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			conn, err := pool.GetContext(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if who, err := redis.String(conn.Do("ACL", "WHOAMI")); err != nil || who != "app" {
				t.Fatalf("ACL WHOAMI = %q, %v; want app", who, err)
			}
			if info, err := redis.String(conn.Do("CLIENT", "INFO")); err != nil || !strings.Contains(info, " db=1 ") {
				t.Errorf("CLIENT INFO = %q, %v; want db=1", info, err)
			}
			if err := open(t, srv, cfg).Ping(ctx); err != nil {
				t.Fatalf("Ping = %v, want nil", err)
			}
			whoami(t, []*redistest.Server{srv})

			// A user with a password refuses the empty one.
			srv.Do(t, "ACL", "SETUSER", "app", "resetpass", ">app-pw-93b1")
			err = open(t, srv, cfg).Ping(ctx)
			if !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Fatalf("Ping as a user with a password, none configured = %v, want ErrRefused with WRONGPASS", err)
			}
			if d := redisstore.Describe(err, cfg); !strings.Contains(d, "user app (") || !strings.Contains(d, "REDIS_USERNAME / REDIS_PASSWORD)") {
				t.Errorf("Describe(%v) = %q, want the user and the credentials' settings", err, d)
			}
		})
	}

	t.Run("Sentinel", func(t *testing.T) {
		sn := redistest.StartSentinel(t, redistest.SentinelOptions{Password: locked, SentinelPassword: locked})
		data := []*redistest.Server{sn.Master(t), sn.Replica(t)}
		for _, srv := range data {
			srv.Do(t, "ACL", nopassUser...)
		}
		for _, srv := range sn.Sentinels() { // SentinelUsername alone, too
			srv.Do(t, "ACL", append([]any{"SETUSER", "watcher", "reset", "on", "nopass"}, anys(aclModesSentinelRules)...)...)
		}
		s, err := redisstore.Open(redisstore.Config{SentinelAddrs: sn.SentinelAddrs(), SentinelMaster: sn.MasterName(),
			SentinelUsername: "watcher", Username: "app"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping = %v, want nil", err)
		}
		whoami(t, data[:1])
		watched := false
		for _, srv := range sn.Sentinels() {
			clients, _ := redis.String(srv.Do(t, "CLIENT", "LIST"), nil)
			watched = watched || strings.Contains(clients, " user=watcher ")
		}
		if !watched {
			t.Error("no sentinel has a connection as watcher, the SentinelUsername")
		}
	})

	t.Run("Cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1, Password: locked})
		for _, n := range c.Nodes() {
			n.Do(t, "ACL", nopassUser...)
		}
		if err := openCluster(t, c, redisstore.Config{Username: "app"}).Ping(ctx); err != nil {
			t.Fatalf("Ping = %v, want nil", err)
		}
		whoami(t, c.Masters(t))
	})
}

// aclModesSubscribed reports whether one of sentinels lists, within 5 s, a
// client of user subscribed to n channels (CLIENT LIST's sub=n).
func aclModesSubscribed(t *testing.T, sentinels []*redistest.Server, user string, n int) bool {
	t.Helper()
	want := fmt.Sprintf(" sub=%d ", n)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, snt := range sentinels {
			list, _ := redis.String(snt.Do(t, "CLIENT", "LIST"), nil)
			for line := range strings.Lines(list) {
				if strings.Contains(line, " user="+user+" ") && strings.Contains(line, want) {
					return true
				}
			}
		}
	}
	return false
}
