package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/FZambia/sentinel/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/loglimit"
)

// How often a Sentinel source asks the sentinels where the master is:
// every sentinelPoll, and besides when they announce a switch or a call
// fails in a way that says the master may have moved, but then at most once
// per sentinelMinAsk, however many calls fail.
const (
	sentinelPoll   = time.Second
	sentinelMinAsk = 50 * time.Millisecond
)

// confirmWait is how long confirm waits for the sentinels' answers: far
// longer than a sentinel that is up takes to answer on a new connection
// (a dial, TLS, AUTH and one command), and short enough that a stalled
// one, while the others split, keeps an announced failover waiting half a
// poll at most.
const confirmWait = sentinelPoll / 2

// subscriptionSilence is how long a subscription to a sentinel may bring
// nothing, not even the answer to the PING that listen sends every
// sentinelPoll, before it is given up for the next sentinel's.
const subscriptionSilence = 3 * sentinelPoll

// sentinelLogInterval is how often, at most, a Sentinel source logs that
// no sentinel named a master, as the session Manager logs an outage.
const sentinelLogInterval = 10 * time.Second

// sentinelAudit is how often a Sentinel source asks every sentinel at once
// where the master is, to log those that do not answer or name another
// (see audit): a few connections a minute to each sentinel, from each
// instance.
const sentinelAudit = 30 * time.Second

// sentinelSource is the Source of a Store under Redis Sentinel: a pool whose
// connections go to the master the sentinels name, found with
// github.com/FZambia/sentinel.
//
// One goroutine asks the sentinels (SENTINEL get-master-addr-by-name) every
// sentinelPoll (the others too before it follows a master that one names
// unannounced: see lookup), and at once when a subscription to a sentinel's
// +promoted-slave or +switch-master channel announces a failover (then
// that sentinel first), or when a call fails with READONLY, a network
// error, or a new connection that is not to a master.
// When the answer changes, every pooled connection to the old master is
// retired when next borrowed: after a failover the old master can go on
// accepting writes on open connections for seconds, and those writes are
// lost when it rejoins as a replica.
//
// A third goroutine asks every sentinel at once every sentinelAudit, and
// logs those that do not answer or name another master (see audit).
//
// Each new connection checks with ROLE that it reached a master, once, when
// dialled; a borrowed connection costs no extra command, so a read stays
// one command. A dial that finds no master there, or no server, makes the
// next lookup ask another sentinel first (see lookup).
type sentinelSource struct {
	pool *redis.Pool
	cfg  Config
	// snt is used by the watch goroutine only (and by Close after it
	// ends): it keeps a pool of connections to each sentinel, and lookup
	// sets its Addrs to the one sentinel it asks (see masterAddr).
	snt *sentinel.Sentinel
	// order is Config.SentinelAddrs in the order lookup asks them: the
	// sentinel that answered last first, those that failed last. The
	// watch goroutine alone uses it.
	order []string
	// silent limits, for each sentinel, the warnings that it did not
	// answer while another did (see warnSilent).
	silent map[string]*loglimit.Limiter

	mu      sync.Mutex
	master  string        // the master's address, "" until known
	namedBy string        // the sentinel that last named master
	gen     uint64        // how many times master changed
	known   chan struct{} // closed once master is first known
	lastErr error         // why the sentinels last named no master, for calls that find none
	// doubted is a master address that a dial found no master (or could
	// not reach), for watch: if the sentinels still name it, the next
	// lookup starts with the sentinel after the one that named it.
	doubted string
	// announcer is the sentinel that last announced a failover, for
	// watch: the next lookup asks it first (see listen).
	announcer string
	// down is set while the last lookup got no master from any sentinel,
	// since downSince; lookupFailures counts such lookups.
	down           bool
	downSince      time.Time
	lookupFailures int64
	// failing is how many sentinels did not answer at the last audit.
	failing int

	// outage limits the warnings that no sentinel named a master, and
	// warned records that one went out since the sentinels last answered,
	// so that their answering again is logged too. The watch goroutine
	// alone uses them.
	outage loglimit.Limiter
	warned bool
	// denied limits the warnings that a sentinel denies a channel, one
	// limiter per channel of announcements; the subscribe goroutine alone
	// uses them.
	denied [len(announcements)]loglimit.Limiter

	poke chan struct{} // ask the sentinels now; buffered, one pending ask is enough
	stop chan struct{} // closed by Close
	// done is cancelled by Close: it ends the dials of sentinels under way,
	// and askSentinel's queries, which may wait ReadTimeout otherwise.
	done      context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup

	subMu sync.Mutex
	sub   redis.Conn // the current subscription, closed by Close to end its wait
}

func newSentinelSource(cfg Config) *sentinelSource {
	done, cancel := context.WithCancel(context.Background())
	s := &sentinelSource{
		cfg:    cfg,
		known:  make(chan struct{}),
		poke:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		outage: loglimit.Limiter{Interval: sentinelLogInterval},
		order:  slices.Clone(cfg.SentinelAddrs),
		done:   done,
		cancel: cancel,
		silent: make(map[string]*loglimit.Limiter, len(cfg.SentinelAddrs)),
	}
	for i := range s.denied {
		s.denied[i].Interval = sentinelLogInterval
	}
	for _, a := range cfg.SentinelAddrs {
		s.silent[a] = &loglimit.Limiter{Interval: sentinelLogInterval}
	}
	s.snt = &sentinel.Sentinel{
		MasterName: cfg.SentinelMaster,
		Dial:       s.dialQuery,
	}
	s.pool = &redis.Pool{
		DialContext:  s.dialMaster,
		TestOnBorrow: testOnBorrow,
		MaxActive:    cfg.MaxActive,
		MaxIdle:      cfg.MaxIdle,
		IdleTimeout:  cfg.IdleTimeout,
		Wait:         true,
	}
	s.wg.Add(3)
	go s.watch()
	go s.subscribe()
	go s.auditLoop()
	return s
}

// GetContext returns a pooled connection to the master.
func (s *sentinelSource) GetContext(ctx context.Context) (redis.Conn, error) {
	return s.pool.GetContext(ctx)
}

// Close stops asking the sentinels and closes every connection: the
// sentinels', when a lookup is under way, once it has ended (see Store.Close).
// Closing again does nothing.
func (s *sentinelSource) Close() error {
	first := false
	s.closeOnce.Do(func() { first = true })
	if !first {
		return nil
	}
	close(s.stop)
	s.cancel()
	s.subMu.Lock()
	if s.sub != nil {
		s.sub.Close()
	}
	s.subMu.Unlock()
	// The watch goroutine may be in a lookup that stalled sentinels hold
	// for their timeouts, one after another: it ends it, and the
	// sentinels' connections close, in the background. Only it uses
	// s.snt; the pool is the master's.
	stopped := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.snt.Close()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(closeSettle):
	}
	return s.pool.Close()
}

// ask asks the watch goroutine to ask the sentinels now.
func (s *sentinelSource) ask() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// noteFailure asks the sentinels after a failure that may mean the master
// moved: a READONLY reply (it was demoted to a replica), a network error, or
// no connection at all.
func (s *sentinelSource) noteFailure(err error) {
	var nerr net.Error
	var nc errNoConn
	if replyCode(err) == "READONLY" || errors.As(err, &nerr) || errors.As(err, &nc) {
		s.ask()
	}
}

// watch asks the sentinels where the master is, every sentinelPoll and when
// asked, until Close.
func (s *sentinelSource) watch() {
	defer s.wg.Done()
	tick := time.NewTicker(sentinelPoll)
	defer tick.Stop()
	for {
		s.lookup()
		select {
		case <-s.stop:
			return
		case <-time.After(sentinelMinAsk):
		}
		select {
		case <-s.stop:
			return
		case <-s.poke:
		case <-tick.C:
		}
	}
}

// lookup asks the sentinels, in order, where the master is, and records
// the first answer when it names the master followed, or comes from the
// sentinel that just announced a failover, which is asked first: it knows
// of it already, where the others may learn of it only from its next hello
// message. Any other first answer, the first of all among them, the other
// sentinels confirm or outvote (see confirm). The sentinel that answers
// first goes to the top of the list, and is asked first next time (see
// masterAddr); a
// sentinel that answers with a server that is no master (one behind the
// others, or monitoring another setup under the same name) would be asked
// first for ever, and the sentinels that are right never. So when a dial
// found the server named last no master, or could not reach it, lookup
// first moves the sentinel that named it to the bottom: each lookup after
// such a dial asks another sentinel first, and within one pass over the
// list a right one answers.
//
// Only the watch goroutine calls lookup: it alone uses s.snt and s.order.
func (s *sentinelSource) lookup() {
	s.mu.Lock()
	doubted, master, namedBy, announcer := s.doubted, s.master, s.namedBy, s.announcer
	s.doubted, s.announcer = "", ""
	s.mu.Unlock()
	if doubted != "" && doubted == master {
		toBottom(s.order, namedBy)
	}
	if announcer != "" {
		toTop(s.order, announcer)
	}
	addr, by, err := s.masterAddr()
	if err != nil {
		s.mu.Lock()
		if s.lastErr == errUnknownMaster {
			// The last sentinel asked answered nil: say what that means.
			err = errors.Join(errUnknownMaster, err)
		}
		s.mu.Unlock()
		s.lookupFailed(err)
		return
	}
	if addr != master && by != announcer && len(s.order) > 1 {
		// A master other than the one followed, or the first, named by a
		// sentinel that announced no failover: it may be one that was
		// down during a failover and names the old master, which may
		// be back, empty and a master still, until the sentinels demote
		// it. Its writes would then be lost, and its reads find nothing.
		// The other sentinels decide.
		var d *disagreeError
		if addr, by, d = s.confirm(addr, by); d != nil {
			s.noteSentinelError(d)
			s.lookupFailed(d)
			return
		}
	}
	s.setMasterNamedBy(addr, by)
	s.noteSentinelError(nil)
	s.lookupAnswered(addr, by, master == "")
}

// masterAddr asks the sentinels in s.order, one after another, where the
// master is, and returns the first answer and the sentinel that gave it,
// which goes to the top of s.order; each that fails goes to the bottom,
// and, when another answers, is logged (at most once per
// sentinelLogInterval for each): calls go on, but a sentinel down or
// refusing the Store's user leaves fewer to follow a failover with, and
// nothing else would tell. FZambia's MasterAddr moves them so too, but
// walks its list while it moves them in it: of [down, up, down] it asks
// the last twice and never the one up, and the lookup fails. So it is
// given one address at a time, and keeps its pool of connections to
// each; its error for one sentinel says "no sentinels
// available; last error: <the cause>", and the warning gives the cause.
func (s *sentinelSource) masterAddr() (addr, by string, err error) {
	type failure struct {
		sentinel string
		err      error
	}
	var failed []failure
	for _, a := range slices.Clone(s.order) {
		s.snt.Addrs = []string{a}
		m, err := s.snt.MasterAddr()
		if err != nil {
			failed = append(failed, failure{a, err})
			toBottom(s.order, a)
			continue
		}
		toTop(s.order, a)
		for _, f := range failed {
			s.warnSilent(f.sentinel, errors.New(strings.TrimPrefix(f.err.Error(), "redigo: no sentinels available; last error: ")))
		}
		return m, a, nil
	}
	return "", "", failed[len(failed)-1].err
}

// warnSilent logs, at most once per sentinelLogInterval for each sentinel,
// that the sentinel at addr did not say where the master is (err says why)
// while another did.
func (s *sentinelSource) warnSilent(addr string, err error) {
	s.silent[addr].Do(time.Now(), func(suppressed int) {
		s.log().LogAttrs(context.Background(), slog.LevelWarn,
			"redisstore: a sentinel did not say where the master is, and another did: calls go on, but fewer sentinels are left to follow a failover with; is it down, does it refuse the Store's sentinel user or password (Config.SentinelUsername and SentinelPassword, REDIS_SENTINEL_USERNAME and REDIS_SENTINEL_PASSWORD), or does it monitor no master of that name (SENTINEL REMOVE, or a reset without its configuration)?",
			slog.String("sentinel", addr),
			slog.Any("error", err),
			slog.Int("suppressed", suppressed))
	})
}

// auditLoop audits the sentinels (see audit) once the first master is
// known, and every sentinelAudit after, until Close. One sentinel has no
// other to be compared with: lookups tell of it.
func (s *sentinelSource) auditLoop() {
	defer s.wg.Done()
	if len(s.cfg.SentinelAddrs) < 2 {
		return
	}
	select {
	case <-s.known:
	case <-s.stop:
		return
	}
	var prev auditResult
	for {
		prev = s.audit(prev)
		select {
		case <-s.stop:
			return
		case <-time.After(sentinelAudit):
		}
	}
}

// auditResult is what an audit found: the master the Store followed, and
// the master each sentinel that answered named.
type auditResult struct {
	master string
	named  map[string]string
}

// audit asks every sentinel at once where the master is, as confirm does,
// and, when any answers, logs each that does not (warnSilent), and each
// that names another master than the one the Store follows, if it named
// that one at the audit before too (prev, sentinelAudit ago), the Store
// following the same master then: sentinels disagree for a moment during
// every failover, and an audit may come in it. A lookup asks a sentinel
// only when those before it fail, so one down, refusing the Store's user,
// behind, or of another setup would go unnoticed while one before it
// answers. The audit changes nothing the Store follows. It returns what
// it found, the next audit's prev.
func (s *sentinelSource) audit(prev auditResult) auditResult {
	s.mu.Lock()
	master, namedBy := s.master, s.namedBy
	s.mu.Unlock()
	found := auditResult{master: master, named: make(map[string]string)}
	addrs := s.cfg.SentinelAddrs
	// Each within its timeouts, as a lookup asks it: its dial (and TLS
	// handshake), the reply to AUTH and the answer. The audit holds
	// nothing up meanwhile.
	answers := s.askAll(addrs, s.cfg.ReadTimeout)
	got := make(map[string]answer, len(addrs))
	answered, agree := 0, 0
	bound := s.cfg.DialTimeout + 2*s.cfg.ReadTimeout
	if s.cfg.TLS != nil {
		bound += s.cfg.DialTimeout
	}
	wait := time.NewTimer(bound)
	defer wait.Stop()
collect:
	for range addrs {
		select {
		case a := <-answers:
			got[a.sentinel] = a
			if a.err == nil {
				answered++
				found.named[a.sentinel] = a.master
				if a.master == master {
					agree++
				}
			}
		case <-wait.C:
			break collect
		case <-s.stop:
			return found
		}
	}
	s.mu.Lock()
	s.failing = len(addrs) - answered
	s.mu.Unlock()
	if answered == 0 {
		return found // lookupFailed tells
	}
	for _, addr := range addrs {
		a, ok := got[addr]
		switch {
		case !ok:
			s.warnSilent(addr, fmt.Errorf("no answer within %v", bound))
		case a.err != nil:
			s.warnSilent(addr, a.err)
		case a.master != master && master == prev.master && a.master == prev.named[addr]:
			s.log().LogAttrs(context.Background(), slog.LevelWarn,
				"redisstore: a sentinel named another master than the one the Store follows at two checks of the sentinels in a row: is it behind (down during a failover), or of another setup listed with these (REDIS_SENTINELS, Config.SentinelAddrs)? If most of them name another, the Store follows a sentinel of another setup",
				slog.String("sentinel", addr),
				slog.String("names", a.master),
				slog.String("master", master),
				slog.String("named_by", namedBy),
				slog.Int("agree", agree),
				slog.Int("sentinels", len(addrs)))
		}
	}
	return found
}

// confirm asks the sentinels other than first's, at once, where the master
// is, and returns the master that most of the sentinels that answer name,
// counting first's answer, and the first sentinel (in the list's order) to
// name it; or, when two masters are named by as many sentinels and none by
// more, a disagreeError. It returns as soon as more than half of all the
// sentinels name one master, and counts no answer that comes later than
// confirmWait (or after Close), so that a stalled sentinel, asked until
// its timeouts, holds the lookup up for confirmWait at most, and then
// only while the others split; its query ends in the background. A sentinel
// whose answer lost goes to the bottom of the list, so that it is not
// asked first, and its answer confirmed again, at every lookup. Only the
// watch goroutine calls it.
func (s *sentinelSource) confirm(first, firstBy string) (master, namedBy string, d *disagreeError) {
	addrs := slices.Clone(s.order)
	answers := s.askAll(slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == firstBy }), confirmWait)
	named := map[string]string{firstBy: first} // sentinel -> the master it named
	votes := map[string]int{first: 1}
	wait := time.NewTimer(confirmWait)
	defer wait.Stop()
count:
	for range len(addrs) - 1 {
		var a answer
		select {
		case a = <-answers:
		case <-wait.C:
			break count // a stalled sentinel casts no vote
		case <-s.stop:
			break count
		}
		if a.err != nil {
			continue // no vote
		}
		named[a.sentinel] = a.master
		if votes[a.master]++; votes[a.master] > len(addrs)/2 {
			break
		}
	}
	best, tied := "", false
	for m, n := range votes {
		switch {
		case best == "" || n > votes[best]:
			best, tied = m, false
		case n == votes[best]:
			tied = true
		}
	}
	if tied {
		return "", "", &disagreeError{master: s.cfg.SentinelMaster, named: named}
	}
	if best != first {
		toBottom(s.order, firstBy)
	}
	for _, a := range addrs {
		if named[a] == best {
			return best, a, nil
		}
	}
	return best, firstBy, nil // not reached: best was named
}

// answer is a sentinel's answer to askSentinel.
type answer struct {
	sentinel, master string
	err              error
}

// askAll asks each sentinel of addrs at once where the master is
// (askSentinel, waiting wait for each answer), and returns the channel
// their answers come on, which never blocks a query that ends late.
func (s *sentinelSource) askAll(addrs []string, wait time.Duration) <-chan answer {
	answers := make(chan answer, len(addrs))
	for _, a := range addrs {
		s.wg.Go(func() {
			m, err := s.askSentinel(a, wait)
			answers <- answer{a, m, err}
		})
	}
	return answers
}

// askSentinel asks the sentinel at addr where the master is, on a
// connection of its own, waiting wait at most for the answer (confirm
// waits confirmWait, and would not count a later one): so a stalled
// sentinel's query ends soon after, and at Close.
func (s *sentinelSource) askSentinel(addr string, wait time.Duration) (string, error) {
	c, err := s.dialSentinelOnce(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(s.done, wait)
	defer cancel()
	res, err := redis.Strings(redis.DoContext(c, ctx, "SENTINEL", "get-master-addr-by-name", s.cfg.SentinelMaster))
	if errors.Is(err, redis.ErrNil) {
		return "", errUnknownMaster // as sentinelConn has it for lookups
	}
	if err != nil {
		return "", err
	}
	if len(res) < 2 {
		return "", errors.New("malformed reply to SENTINEL get-master-addr-by-name")
	}
	return net.JoinHostPort(res[0], res[1]), nil // as FZambia's MasterAddr does
}

// disagreeError is a lookup whose sentinels named different masters, as
// many of them each: one that was down during a failover and has not
// caught up yet, or sentinels of two setups. The Store follows neither.
type disagreeError struct {
	master string            // Config.SentinelMaster
	named  map[string]string // sentinel -> the master it named
}

func (e *disagreeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the sentinels disagree on the master of %q:", e.master)
	for i, a := range slices.Sorted(maps.Keys(e.named)) {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s names %s", a, e.named[a])
	}
	return b.String()
}

// lookupFailed records a lookup that no sentinel answered with a master,
// for PoolStats, and logs it, at most once per sentinelLogInterval: calls
// go on to the master named last, so nothing else tells the operator that
// a failover would now go unfollowed and that a new instance cannot start.
func (s *sentinelSource) lookupFailed(err error) {
	now := time.Now()
	s.mu.Lock()
	if !s.down {
		s.down, s.downSince = true, now
	}
	s.lookupFailures++
	master := s.master
	s.mu.Unlock()
	msg := "redisstore: no sentinel named the master; calls go on to the master named last, but a failover would not be followed"
	if master == "" {
		msg = "redisstore: no sentinel named the master; none has since the Store opened, so every call fails until one does"
	}
	var d *disagreeError
	switch {
	case errors.As(err, &d):
		msg = "redisstore: the sentinels disagree on the master, as many naming each: calls go on to the master named last until more name one; is a sentinel behind, or are two setups' sentinels listed?"
		if master == "" {
			msg = "redisstore: the sentinels disagree on the master, as many naming each: every call fails until more name one; is a sentinel behind, or are two setups' sentinels listed?"
		}
	case errors.Is(err, errUnknownMaster) && master != "":
		// As after SENTINEL REMOVE, or sentinels reset without their
		// configuration.
		msg = "redisstore: the sentinels monitor no master of that name (REDIS_SENTINEL_MASTER) any more; calls go on to the master named last, but a failover would not be followed"
	}
	s.outage.Do(now, func(suppressed int) {
		s.warned = true
		s.log().LogAttrs(context.Background(), slog.LevelWarn, msg,
			slog.String("sentinels", strings.Join(s.cfg.SentinelAddrs, ",")),
			slog.String("master_name", s.cfg.SentinelMaster),
			slog.String("master", master),
			slog.Any("error", err),
			slog.Int("suppressed", suppressed))
	})
}

// lookupAnswered records a lookup that the sentinel at by answered with
// addr, and logs that the sentinels answer again if lookupFailed logged
// that they did not; first: no sentinel had named a master since the Store
// opened.
func (s *sentinelSource) lookupAnswered(addr, by string, first bool) {
	s.mu.Lock()
	wasDown, since := s.down, s.downSince
	s.down = false
	s.mu.Unlock()
	if !wasDown || !s.warned {
		return
	}
	s.warned = false
	msg := "redisstore: the sentinels name the master again"
	if first {
		msg = "redisstore: the sentinels name a master, the first since the Store opened"
	}
	s.log().LogAttrs(context.Background(), slog.LevelInfo, msg,
		slog.String("sentinel", by),
		slog.String("master", addr),
		slog.Duration("down_for", time.Since(since).Round(time.Millisecond)))
}

// log returns the logger of the source's lines: Config.Logger, or
// slog.Default().
func (s *sentinelSource) log() *slog.Logger {
	return cmp.Or(s.cfg.Logger, slog.Default())
}

// sentinelStats reports whether the last lookup got no master from any
// sentinel, how many lookups did not, and how many sentinels did not
// answer at the last audit.
func (s *sentinelSource) sentinelStats() (down bool, failures int64, failing int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down, s.lookupFailures, s.failing
}

// toBottom moves addr to the end of addrs, keeping the order of the others.
func toBottom(addrs []string, addr string) {
	if i := slices.Index(addrs, addr); i >= 0 {
		copy(addrs[i:], addrs[i+1:])
		addrs[len(addrs)-1] = addr
	}
}

// toTop moves addr to the start of addrs, keeping the order of the others.
func toTop(addrs []string, addr string) {
	if i := slices.Index(addrs, addr); i >= 0 {
		copy(addrs[1:i+1], addrs[:i])
		addrs[0] = addr
	}
}

// announced tells watch that the sentinel at addr announced a failover,
// and asks the sentinels again, that one first.
func (s *sentinelSource) announced(addr string) {
	s.mu.Lock()
	s.announcer = addr
	s.mu.Unlock()
	s.ask()
}

// doubt tells watch that a dial of addr, which the sentinels named as the
// master, found no master there or no server, and asks the sentinels again.
func (s *sentinelSource) doubt(addr string) {
	s.mu.Lock()
	s.doubted = addr
	s.mu.Unlock()
	s.ask()
}

// setMasterNamedBy records the master's address, named by the sentinel at
// sentinel, and logs a change of master (at Info), so that an operator
// sees when, and where to, the Store followed a failover.
func (s *sentinelSource) setMasterNamedBy(addr, sentinel string) {
	s.mu.Lock()
	s.namedBy = sentinel
	old := s.master
	if addr == old {
		s.mu.Unlock()
		return
	}
	if old == "" {
		close(s.known)
	}
	s.master = addr
	s.gen++
	s.mu.Unlock()
	if old != "" {
		s.log().LogAttrs(context.Background(), slog.LevelInfo, "redisstore: the sentinels name another master; calls go there from now on",
			slog.String("master_name", s.cfg.SentinelMaster),
			slog.String("master", addr),
			slog.String("previous", old),
			slog.String("sentinel", sentinel))
	}
}

// current returns the master's address, the sentinel that named it and
// its generation, waiting for the first answer of the sentinels within ctx.
func (s *sentinelSource) current(ctx context.Context) (addr, namedBy string, gen uint64, err error) {
	select {
	case <-s.known:
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		// The sentinels' own refusal (a wrong SentinelPassword) says more
		// than the deadline, and classifies the call as refused.
		// Sentinels that disagree did name masters: that comes first,
		// without errNoMaster's words.
		if d := (*disagreeError)(nil); errors.As(s.lastErr, &d) {
			return "", "", 0, errors.Join(d, ctx.Err())
		}
		cause := s.lastErr
		if cause == nil {
			// The lookup is still under way, with no sentinel's answer or
			// failure to show for it: they take longer than the call.
			cause = errSentinelsSilent
		}
		return "", "", 0, errors.Join(errNoMaster, cause, ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.master, s.namedBy, s.gen, nil
}

// generation returns how many times the master changed.
func (s *sentinelSource) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

var (
	errNoMaster = errors.New("no sentinel has named a master yet")
	// errSentinelsSilent is why, when the first lookup has had no answer
	// nor failure from any sentinel within the call's time.
	errSentinelsSilent = errors.New("no sentinel has answered yet")
	errRetired         = errors.New("connection to a former master")
)

// notMasterError is a dial of the server a sentinel named as the master
// that found it answering ROLE with another role: a replica, during a
// failover or because the sentinel is behind or monitors another setup.
type notMasterError struct {
	server, sentinel, role string
}

func (e *notMasterError) Error() string {
	return fmt.Sprintf("sentinel %s named %s as the master, but it answers ROLE as %s", e.sentinel, e.server, e.role)
}

// dialMaster dials the master and checks, with ROLE, that it is one: right
// after a failover a sentinel can still name the old master, which may be
// on its way to becoming a replica, and a sentinel may name a replica
// (one that is behind, or monitors another setup).
//
// It counts the dial in the Store's PoolStats, as failed when the server
// proved no master: dial, which would count it a success before ROLE, is
// given no counter.
func (s *sentinelSource) dialMaster(ctx context.Context) (_ redis.Conn, err error) {
	addr, namedBy, gen, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	if s.cfg.dials != nil {
		defer s.cfg.dials.count(&err)
	}
	node := s.cfg
	node.Addr = addr
	node.dials = nil
	c, err := dial(ctx, node)
	if err != nil {
		s.doubt(addr)
		return nil, err
	}
	r, err := role(ctx, c)
	if err == nil && r != "master" {
		err = &notMasterError{server: addr, sentinel: namedBy, role: r}
	}
	if err != nil {
		c.Close()
		s.doubt(addr)
		return nil, err
	}
	if s.generation() != gen {
		c.Close()
		s.ask()
		return nil, errRetired // the sentinels named another master while this one was dialled
	}
	c.retired = func() bool { return s.generation() != gen }
	return c, nil
}

// role returns the first element of the reply to ROLE.
func role(ctx context.Context, c redis.Conn) (string, error) {
	reply, err := redis.Values(cmd(ctx, c, "ROLE"))
	if err != nil {
		return "", err
	}
	if len(reply) == 0 {
		return "", errors.New("empty reply to ROLE")
	}
	return redis.String(reply[0], nil)
}

// dialSentinel dials a sentinel, with the sentinels' credentials and the
// Config's TLS and timeouts, and checks with PING that it lets us in (a
// sentinel with a password answers NOAUTH to a client without one only
// when asked something). It keeps an error for current; a success clears
// none, since the subscription's dial would otherwise erase the refusal the
// query on another connection just got (watch clears it once a sentinel
// names a master).
func (s *sentinelSource) dialSentinel(addr string) (redis.Conn, error) {
	c, err := s.dialSentinelOnce(addr)
	if err == nil {
		if _, err = c.Do("PING"); err != nil {
			c.Close()
		}
	}
	if err != nil {
		s.noteSentinelError(err)
		return nil, err
	}
	return c, nil
}

// dialQuery is dialSentinel for FZambia's queries: its connections keep the
// sentinels' refusals (see sentinelConn).
func (s *sentinelSource) dialQuery(addr string) (redis.Conn, error) {
	c, err := s.dialSentinel(addr)
	if err != nil {
		return nil, err
	}
	return sentinelConn{Conn: c, s: s}, nil
}

// noteSentinelError keeps err as why no master is known (nil: there is one).
func (s *sentinelSource) noteSentinelError(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// sentinelConn is a connection to a sentinel that keeps the sentinel's
// refusals for current: FZambia's MasterAddr reports them only as text
// ("no sentinels available; last error: ..."), so a NOPERM, or a master
// name the sentinels do not know, would otherwise look like an outage.
type sentinelConn struct {
	redis.Conn
	s *sentinelSource
}

// errUnknownMaster is what a sentinel's nil answer to get-master-addr-by-name
// means. It is a reply error, code ERR, so that the call fails as
// ErrRefused: the configuration names a master no sentinel monitors.
var errUnknownMaster = redis.Error("ERR the sentinels monitor no master of that name (Config.SentinelMaster)")

func (c sentinelConn) Do(cmd string, args ...any) (any, error) {
	reply, err := c.Conn.Do(cmd, args...)
	var re redis.Error
	switch {
	case errors.As(err, &re):
		c.s.noteSentinelError(re)
	case err == nil && reply == nil && strings.EqualFold(cmd, "SENTINEL"):
		c.s.noteSentinelError(errUnknownMaster)
	}
	return reply, err
}

// dialSentinelOnce opens a connection to the sentinel at addr, or fails
// at Close.
func (s *sentinelSource) dialSentinelOnce(addr string) (redis.Conn, error) {
	opts := []redis.DialOption{
		redis.DialConnectTimeout(s.cfg.DialTimeout),
		redis.DialReadTimeout(s.cfg.ReadTimeout),
		redis.DialWriteTimeout(s.cfg.WriteTimeout),
	}
	// As dial does for the master: redigo drops a username without a
	// password, so AUTH is sent here.
	nopass := s.cfg.SentinelUsername != "" && s.cfg.SentinelPassword == ""
	if !nopass {
		opts = append(opts, redis.DialUsername(s.cfg.SentinelUsername), redis.DialPassword(s.cfg.SentinelPassword))
	}
	if s.cfg.TLS != nil {
		opts = append(opts,
			redis.DialUseTLS(true),
			redis.DialTLSConfig(s.cfg.TLS),
			redis.DialTLSHandshakeTimeout(s.cfg.DialTimeout),
		)
	}
	c, err := redis.DialContext(s.done, "tcp", addr, opts...)
	if err != nil || !nopass {
		return c, err
	}
	if err := authUser(s.done, c, s.cfg.SentinelUsername); err != nil { // bounded by ReadTimeout
		c.Close()
		return nil, err
	}
	return c, nil
}

// subscribe listens to the sentinels' announcements of a failover, on one
// sentinel at a time, and asks the sentinels at once on each, and each time
// it (re)subscribes, since it may have missed one meanwhile.
func (s *sentinelSource) subscribe() {
	defer s.wg.Done()
	for i := 0; ; i++ {
		addr := s.cfg.SentinelAddrs[i%len(s.cfg.SentinelAddrs)]
		if c, err := s.dialSentinel(addr); err == nil {
			s.listen(c, addr)
		}
		select {
		case <-s.stop:
			return
		case <-time.After(sentinelPoll):
		}
	}
}

// announcements are the channels on which a sentinel announces a failover.
// +promoted-slave is announced first: the sentinel that runs the failover names
// the new master from the moment it sees the replica promoted, and
// announces +switch-master only once it has turned every other replica to
// it, a second or more later with two replicas; meanwhile the old master
// goes on acknowledging writes that are lost when it is demoted. The other
// sentinels announce +switch-master when they hear of the new master.
var announcements = [...]string{"+switch-master", "+promoted-slave"}

// listen asks the sentinels on every announcement (see announcements) that
// c, a connection to the sentinel at addr, receives, that sentinel first,
// until c fails, Close closes it, or the sentinel stays silent for
// subscriptionSilence. A sentinel whose ACL denies the user one of the
// channels (+promoted-slave, to a line written for an earlier version of
// this package) still brings the other, with a warning.
func (s *sentinelSource) listen(c redis.Conn, addr string) {
	s.subMu.Lock()
	select {
	case <-s.stop:
		s.subMu.Unlock()
		c.Close()
		return
	default:
	}
	s.sub = c
	s.subMu.Unlock()
	defer func() {
		s.subMu.Lock()
		s.sub = nil
		s.subMu.Unlock()
		c.Close()
	}()
	psc := redis.PubSubConn{Conn: c}
	// One SUBSCRIBE per channel: a sentinel refuses a SUBSCRIBE whole
	// when its ACL denies any of the channels.
	for _, ch := range announcements {
		if err := psc.Subscribe(ch); err != nil {
			return
		}
	}
	// Announcements come seldom, so silence alone says nothing; but a
	// sentinel that stops answering without closing the connection (a
	// frozen machine, a partition) would hold the subscription until TCP
	// gives up, minutes later, and its switches would reach the Store only
	// through the poll. So c is pinged every sentinelPoll (redigo lets one
	// goroutine send while another receives), and a subscription that
	// brings nothing for subscriptionSilence ends, for the next
	// sentinel's.
	done := make(chan struct{})
	defer close(done) // before c.Close, deferred above
	go func() {
		tick := time.NewTicker(sentinelPoll)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if psc.Ping("") != nil {
					return
				}
			}
		}
	}()
	// The replies to the SUBSCRIBEs come first, in order.
	replies, subscribed := 0, 0
	for {
		switch v := psc.ReceiveWithTimeout(subscriptionSilence).(type) {
		case redis.Subscription:
			replies++
			subscribed++
			s.ask() // a switch may have happened while not subscribed
		case redis.Message:
			if announces(v, s.cfg.SentinelMaster) {
				s.announced(addr)
			}
		case error:
			replies++
			if replies > len(announcements) || !strings.HasPrefix(v.Error(), "NOPERM") {
				return
			}
			s.deniedChannel(addr, replies-1)
			if replies == len(announcements) && subscribed == 0 {
				return // nothing to listen to here
			}
		}
	}
}

// announces reports whether m, a message on one of the announcements
// channels, is of a failover of the master called name: a sentinel that
// monitors other masters too announces theirs on the same channels, and
// an announcement is followed without asking the other sentinels (see
// lookup). The messages are "<name> <old ip> <old port> <new ip> <new
// port>" (+switch-master) and "slave <ip>:<port> <ip> <port> @ <name>
// <master ip> <master port>" (+promoted-slave).
func announces(m redis.Message, name string) bool {
	f := strings.Fields(string(m.Data))
	switch m.Channel {
	case "+switch-master":
		return len(f) > 0 && f[0] == name
	case "+promoted-slave":
		i := slices.Index(f, "@")
		return i >= 0 && i+1 < len(f) && f[i+1] == name
	}
	return false
}

// deniedChannel warns that the sentinel at addr denies the user the
// channel announcements[i], at most once per sentinelLogInterval for each
// channel (subscribe tries again every sentinelPoll).
func (s *sentinelSource) deniedChannel(addr string, i int) {
	channel := announcements[i]
	s.denied[i].Do(time.Now(), func(suppressed int) {
		s.log().LogAttrs(context.Background(), slog.LevelWarn,
			"redisstore: the sentinel's ACL denies a channel that announces failovers: add it to the sentinels' ACL line (see the redisstore documentation); until then a failover is followed up to a second late, and writes meanwhile reach the old master",
			slog.String("sentinel", addr),
			slog.String("channel", channel),
			slog.String("user", cmp.Or(s.cfg.SentinelUsername, "default")),
			slog.Int("suppressed", suppressed))
	})
}
