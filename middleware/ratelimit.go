package middleware

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionkit/sessionkit/internal/keycheck"
	"github.com/sessionkit/sessionkit/internal/loglimit"
	"github.com/sessionkit/sessionkit/internal/redact"
	"github.com/sessionkit/sessionkit/session"
)

// RateCounter counts requests in fixed windows shared by every app instance.
// A *redisstore.Store is one: see its CountRequests method for the Redis
// commands, the keys and the guarantees.
type RateCounter interface {
	// CountRequests adds one request to the counter of each key, opening a
	// window of windows[i] at the first, and returns the requests counted
	// in each key's current window and the time until it ends.
	CountRequests(ctx context.Context, keys []string, windows []time.Duration) (counts []int64, resets []time.Duration, err error)
}

// Rule admits at most Limit requests per Window for each value of Key.
type Rule struct {
	// Name names the rule in the RateLimit-Policy and RateLimit headers
	// (RateLimit lists a rule keyed by a name only on a 429 it caused: see
	// RateLimit) and in
	// its Redis key: 1 to 32 characters of a-z, 0-9, "-" and "_".
	// Required, and unique within a limiter. Rules of several limiters with
	// the same Name and key value share one counter (a login form and a
	// login API counting the same user name's attempts together), so they
	// should have the same Limit and Window: a request counted by the rule
	// of the shorter Window ends the open window within it, for all of
	// them (the counter's expiry is cut down to a rule's Window, never
	// lengthened: a Window made shorter takes effect at once). A request that passes through
	// two limiters sharing a counter so, one inside the other, on the same
	// RateCounter (the same *redisstore.Store), is counted in it once: the
	// inner limiter takes the outer one's count, and the lower Limit of the
	// two binds, and is the one the headers show. A request that the
	// handler makes on the context of one admitted (a batch endpoint's
	// sub-request) is another request, counted in its own right.
	Name string

	// Limit is the most requests admitted per window. Required, above 0.
	Limit int

	// Window is the length of a window, in whole seconds (the headers count
	// in seconds), at least one. Required.
	Window time.Duration

	// Key says what requests are counted by: [ByIP], [ByUser],
	// [ByFormField], [ByJSONField], [ByName] or [ByFunc]. Required. A request for
	// which it finds no value (no user logged in, no such field) is not
	// counted by this rule. A limiter with a ByUser rule must run behind
	// Sessions, or it answers every request 500 (see ByUser).
	Key Key
}

// Outage says what a limiter does when its counter fails (Redis
// unreachable, too slow, or refusing).
type Outage int

const (
	// OutageDefault is the zero value: FailOpen for a limiter built by
	// RateLimit, FailClosed for one built by LoginLimit.
	OutageDefault Outage = iota
	// FailOpen serves the request unlimited, logs the failure at Warn and
	// counts it in Metrics.
	FailOpen
	// FailClosed answers 503 with Retry-After, logs the failure at Warn and
	// counts it in Metrics: no guess goes unlimited.
	FailClosed
)

// DefaultMaxBody is the default RateLimitConfig.MaxBody.
const DefaultMaxBody = 64 << 10

// minSecretLen is the shortest RateLimitConfig.Secret accepted.
const minSecretLen = 32

// RateLimitConfig configures RateLimit and LoginLimit.
type RateLimitConfig struct {
	// Rules are the limits; a request must be within all of them. At least
	// one, at most 16. A request's counts cost one Redis round trip (one
	// per rule on a Redis Cluster), or two when rules keyed by a name
	// (ByFormField, ByJSONField, ByName) count it beside others: those are
	// counted only once the others admitted it, so that a request refused
	// by its address spends no attempt of the user name it names.
	Rules []Rule

	// Secret keys the HMAC-SHA256 that turns each rule's key value (an
	// address, a user name) into the hash in its Redis key, so that no
	// Redis key, MONITOR line or backup says who is being limited, and
	// nobody without the secret can work out an address's key by trying
	// every address. At least 32 random bytes (with at least 8 distinct
	// values and no run of 8 bytes twice, as session.Config.Keys), the
	// same on every app instance (or they count apart), and not one of
	// the session signing keys. Required.
	Secret []byte

	// Outage chooses between FailOpen and FailClosed when the counter
	// fails. Default (zero): FailOpen for RateLimit, FailClosed for
	// LoginLimit.
	Outage Outage

	// MaxBody bounds the request body that ByFormField and ByJSONField
	// read; a longer body is answered 413 without counting anything.
	// Default DefaultMaxBody (64 KiB) when zero. Only limiters with such a
	// rule read the body; the handler then reads the same bytes.
	MaxBody int64

	// OnLimited, when set, writes the answer to a request over the limit,
	// for example a login page that says when to try again. Its answer
	// has the status 429 unless it calls WriteHeader with another (a
	// redirect, say): a body written without WriteHeader, or no answer at
	// all, goes out with 429, never 200. The Retry-After, RateLimit-Policy
	// and RateLimit headers are already set; retry is the time until the
	// request would be admitted. Default nil: 429 with a JSON body
	// {"error":"too many requests","retry_after":<seconds>}, or a short
	// HTML page for a request that accepts text/html.
	OnLimited func(w http.ResponseWriter, r *http.Request, retry time.Duration)

	// OnTooLarge, when set, writes the answer to a request whose body is
	// over MaxBody, for example a page of the site's own with a way back.
	// Its answer has the status 413 unless it calls WriteHeader with
	// another, as OnLimited's has 429; nothing was counted. Default
	// nil: 413 with a JSON body {"error":"request body too large"}, or a
	// short HTML page for a request that accepts text/html.
	OnTooLarge func(w http.ResponseWriter, r *http.Request)

	// OnUnavailable, when set, writes the answer to a request refused
	// because the counter failed and the limiter fails closed, for example
	// a login page that says to try again shortly. Its answer has the
	// status 503 unless it calls WriteHeader with another, as OnLimited's
	// has 429; Retry-After is already set, and r's body, if the
	// limiter read it, can be read again. Default nil: 503 with a JSON
	// body {"error":"rate limiter unavailable"}, or a short HTML page for a
	// request that accepts text/html.
	OnUnavailable func(w http.ResponseWriter, r *http.Request)

	// Logger receives the counter's failures at Warn, with the rule names
	// and the error (which names no key): one line per 10 seconds at most,
	// with the number of failures held back since the previous line.
	// Default slog.Default().
	Logger *slog.Logger

	// Metrics, when set, counts refusals and outages (the module
	// github.com/sessionkit/sessionkit/prometheus implements it). Default
	// nil: nothing counted.
	Metrics RateLimitMetrics
}

// String returns cfg as %+v would print it, but with Secret as
// "[redacted]" when set, so that a configuration may be logged:
// {Rules:[...] Secret:[redacted] Outage:0 MaxBody:0 ...}.
//
// A struct that embeds a RateLimitConfig gets String, GoString, Format,
// LogValue and MarshalJSON too (Go promotes them), and so prints, logs and
// marshals as the RateLimitConfig alone, its own fields left out. Make it
// a named field (Limits middleware.RateLimitConfig) to print both.
//
// fmt cannot call a method of a value that it reaches through an
// unexported field, and prints such a value's fields themselves: a RateLimitConfig
// in an unexported field of a struct (appConfig{cfg: c} printed with
// %+v, or logged by slog's text handler) shows its Secret in full. Keep
// a RateLimitConfig in an exported field, or print or log it directly.
func (cfg RateLimitConfig) String() string { return redact.String(cfg, "Secret") }

// GoString returns cfg as %#v would print it, Secret redacted as String
// does.
func (cfg RateLimitConfig) GoString() string { return redact.GoString(cfg, "Secret") }

// Format implements fmt.Formatter: %#v prints GoString, every other verb
// String, so that no verb prints the secret; but a RateLimitConfig in an
// unexported field prints with it (see String).
func (cfg RateLimitConfig) Format(f fmt.State, verb rune) { redact.Format(f, verb, cfg) }

// LogValue implements slog.LogValuer: a group of one attribute per field,
// each as String prints it, Secret redacted.
//
// Through a nil *RateLimitConfig, slog writes "LogValue panicked" and a
// stack in place of the value (nothing of any Config): Go calls a
// method of RateLimitConfig through a nil pointer by panicking, before LogValue
// runs, and slog recovers. fmt prints such a pointer as <nil>, and
// encoding/json as null.
func (cfg RateLimitConfig) LogValue() slog.Value { return redact.LogValue(cfg, "Secret") }

// MarshalJSON implements json.Marshaler with the view LogValue gives: an
// object of one string per field, each as String prints it, Secret
// redacted. slog's JSON handler marshals a RateLimitConfig inside a struct
// or a slice with encoding/json, which cannot marshal its func fields. It
// is not meant to go through JSON and back: what it marshals to has no
// Secret.
func (cfg RateLimitConfig) MarshalJSON() ([]byte, error) { return redact.MarshalJSON(cfg, "Secret") }

// RateLimitMetrics receives what a limiter counts. Its methods are called
// on the request's goroutine and must be quick and safe for concurrent
// use.
type RateLimitMetrics interface {
	// RateLimited counts a request refused with 429 because it was over
	// the limit of the rule named rule (one call per rule it was over).
	RateLimited(rule string)

	// RateLimitUnavailable counts a request whose counter failed; served
	// reports whether it was served anyway (FailOpen) or refused with 503
	// (FailClosed).
	RateLimitUnavailable(served bool)
}

// RateLimit returns middleware that limits requests by cfg.Rules, counted
// by c in Redis and so shared by every app instance, for routes in general:
// when c fails it serves requests unlimited (FailOpen) unless cfg.Outage
// says FailClosed. Use LoginLimit for logins and other routes that check
// secrets.
//
// Every response to a request it counted carries the RateLimit-Policy and
// RateLimit header fields of draft-ietf-httpapi-ratelimit-headers-11, one
// list member per rule that keys the request (RateLimit-Policy) or that
// counted it and is keyed by its sender (RateLimit: a rule keyed by a
// name, ByFormField, ByJSONField or ByName, counts everyone's attempts on
// that name, which its state would tell anyone; such a rule is listed
// only on a 429 it caused, as r=0 and t the Retry-After). A request over any
// rule's limit gets 429 with Retry-After, the time until the window of
// every rule that counted it and is at its limit has ended (see
// RateLimitConfig.OnLimited), and never reaches the handler. A rule keyed
// by a name that did not count the request, because a rule keyed by its
// sender refused it first, is not known to be at its limit, and may
// refuse the request after that wait in turn. A counter failure gets 503
// with Retry-After under FailClosed. A body over MaxBody gets 413, and a
// JSON body whose matches of a ByJSONField's field differ gets 400 (see
// ByJSONField), neither counted. Each rule's window is a fixed window that
// opens at the first request counted (see RateCounter). A limiter with a
// ByUser rule must run behind Sessions; without it, it answers every
// request 500 and logs the mistake once (see ByUser).
func RateLimit(c RateCounter, cfg RateLimitConfig) (func(http.Handler) http.Handler, error) {
	return newLimiter(c, cfg, FailOpen)
}

// LoginLimit is RateLimit for routes that check a secret (a login, a
// password reset, a one-time code): when the counter fails it answers 503
// (FailClosed) unless cfg.Outage says FailOpen, so that an outage of Redis
// never lets password guesses through unlimited. Count such routes by user
// name (ByFormField, ByJSONField) and by address (ByIP) in the same
// limiter: every attempt is counted, whether or not the user exists, so
// a name with an account and one without get the same answers.
func LoginLimit(c RateCounter, cfg RateLimitConfig) (func(http.Handler) http.Handler, error) {
	return newLimiter(c, cfg, FailClosed)
}

// limiter is the middleware: its configuration, validated once and with
// its defaults filled in, and what is derived from it.
type limiter struct {
	c RateCounter
	// cfg is the caller's configuration with its defaults, its own copy
	// of Rules, and no Secret: hashes keeps the only copy of that.
	cfg       RateLimitConfig
	failOpen  bool // cfg.Outage, or the default of RateLimit or LoginLimit, is FailOpen
	readsBody bool // a rule keys requests by a body field
	byUser    bool // a rule keys requests by the session's user
	hashes    hashPool
	outages   loglimit.Limiter // the counter's failures, logged at most every outageLogInterval
	// missingSessions logs once that a ByUser rule runs without Sessions.
	missingSessions sync.Once
	// shared holds, for each rule, whether another limiter has a rule of
	// its name on the same counter (see sharedName), or this one wraps
	// more than one handler, maybe one inside the other.
	shared  []*atomic.Bool
	wrapped atomic.Bool // the middleware wrapped a handler
}

func newLimiter(c RateCounter, cfg RateLimitConfig, def Outage) (func(http.Handler) http.Handler, error) {
	// A nil *redisstore.Store is a non-nil interface that would panic at
	// the first request.
	if v := reflect.ValueOf(c); c == nil || v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, errors.New("middleware: rate limit: nil RateCounter")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &limiter{c: c, cfg: cfg, hashes: newHashPool(bytes.Clone(cfg.Secret))}
	l.cfg.Rules = slices.Clone(cfg.Rules)
	for _, r := range l.cfg.Rules {
		l.shared = append(l.shared, sharedName(c, r.Name))
	}
	l.cfg.Secret = nil
	if l.cfg.Outage == OutageDefault {
		l.cfg.Outage = def
	}
	l.failOpen = l.cfg.Outage == FailOpen
	if l.cfg.MaxBody == 0 {
		l.cfg.MaxBody = DefaultMaxBody
	}
	if l.cfg.Logger == nil {
		l.cfg.Logger = slog.Default()
	}
	l.outages.Interval = outageLogInterval
	for _, r := range l.cfg.Rules {
		l.readsBody = l.readsBody || r.Key.body
		l.byUser = l.byUser || r.Key.user
	}
	return l.middleware, nil
}

// validate checks cfg and names the first bad field.
func (cfg RateLimitConfig) validate() error {
	bad := func(field, want string) error {
		return fmt.Errorf("middleware: RateLimitConfig.%s: %s", field, want)
	}
	if len(cfg.Rules) == 0 || len(cfg.Rules) > 16 {
		return bad("Rules", "want 1 to 16 rules")
	}
	seen := make(map[string]bool)
	for i, r := range cfg.Rules {
		field := fmt.Sprintf("Rules[%d]", i)
		switch {
		case !validRuleName(r.Name):
			return bad(field+".Name", "want 1 to 32 of a-z, 0-9, - and _")
		case seen[r.Name]:
			return bad(field+".Name", "used by two rules")
		case r.Limit <= 0:
			return bad(field+".Limit", "want above 0")
		case r.Window < time.Second || r.Window%time.Second != 0:
			return bad(field+".Window", "want whole seconds, at least 1s")
		case r.Key.invalid != "":
			return bad(field+".Key", r.Key.invalid)
		case r.Key.fn == nil:
			return bad(field+".Key", "required: ByIP, ByUser, ByFormField, ByJSONField, ByName or ByFunc")
		}
		seen[r.Name] = true
	}
	if err := keycheck.Check(cfg.Secret, minSecretLen); err != nil {
		return bad("Secret", err.Error())
	}
	if cfg.Outage < OutageDefault || cfg.Outage > FailClosed {
		return bad("Outage", "want OutageDefault, FailOpen or FailClosed")
	}
	if cfg.MaxBody < 0 {
		return bad("MaxBody", "must not be negative")
	}
	return nil
}

// validRuleName reports whether name may be a Rule's Name: it goes into a
// Redis key after the hash, and into a header's quoted string, so it
// carries no ":", quote, brace or space.
func validRuleName(name string) bool {
	if len(name) == 0 || len(name) > 32 {
		return false
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

var (
	// errBodyTooLarge reports a body over MaxBody.
	errBodyTooLarge = errors.New("request body too large")
	// errCounterReply reports a RateCounter that answered a count or a
	// reset too few or too many, which is handled as its failure.
	errCounterReply = errors.New("middleware: rate limit: the counter answered a count per key too few or too many")
)

func (l *limiter) middleware(next http.Handler) http.Handler {
	if l.wrapped.Swap(true) {
		// Wrapping a second handler: the two may nest (limit(mux), and
		// limit(api) within mux), sharing every counter.
		for _, f := range l.shared {
			if f != nil {
				f.Store(true)
			}
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.byUser && errors.Is(session.LoadError(r.Context()), session.ErrNoSession) {
			// No Sessions ran before this: no request would have a
			// user, and the rule would silently limit nothing.
			l.missingSessions.Do(func() {
				l.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "middleware: a rate limit rule keyed by ByUser runs without Sessions before it: every request is refused with 500; wrap the limiter with Sessions")
			})
			writeJSONError(w, http.StatusInternalServerError, "session middleware missing")
			return
		}
		var body []byte
		if l.readsBody && r.Body != nil && r.Body != http.NoBody {
			var err error
			body, err = readBody(r.Body, l.cfg.MaxBody)
			if errors.Is(err, errBodyTooLarge) {
				if l.cfg.OnTooLarge != nil {
					hw := &hookWriter{ResponseWriter: w, code: http.StatusRequestEntityTooLarge}
					l.cfg.OnTooLarge(hw, r)
					hw.finish()
					return
				}
				writeError(w, r, http.StatusRequestEntityTooLarge, "request body too large", "The request is too large.")
				return
			}
			if err != nil {
				writeError(w, r, http.StatusBadRequest, "unreadable request body", "The request could not be read.")
				return
			}
			// A shallow copy carries the bytes read to the handler; r
			// itself is not changed.
			r = r.WithContext(r.Context())
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		ks := newKeyed(len(l.cfg.Rules))
		for i := range l.cfg.Rules {
			rule := &l.cfg.Rules[i]
			v, err := rule.Key.fn(r, body)
			if err != nil {
				// errAmbiguousField, the only error of a Key.
				writeError(w, r, http.StatusBadRequest, "ambiguous request body", "The request names a field more than once, with different values.")
				return
			}
			if v == "" {
				continue
			}
			ks.add(rule, l.hashes.key(rule.Name, v))
		}
		if len(ks.rules) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		outer, _ := r.Context().Value(countedKey{}).(*counted)
		// Counted whether or not the client stays: a client that hangs up
		// right after sending (the request's context cancelled) would
		// otherwise make the count fail as if Redis had, and FailOpen let
		// the request through uncounted. The store's Timeout bounds it.
		counts, resets, err := l.countOnce(context.WithoutCancel(r.Context()), &ks, outer)
		h := w.Header()
		addMembers(h, policyField, policyHeader(ks.rules))
		if err != nil {
			l.outage(w, r, next, ks.rules, err)
			return
		}
		l.outages.End(time.Now(), func(suppressed int) {
			l.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "rate limit: counter works again",
				slog.Int("suppressed", suppressed))
		})
		over := false
		for i, rule := range ks.rules {
			if counts[i] > int64(rule.Limit) {
				over = true
				if l.cfg.Metrics != nil {
					l.cfg.Metrics.RateLimited(rule.Name)
				}
			}
		}
		if !over {
			addMembers(h, stateField, stateHeader(ks.rules, counts, resets, 0))
			if l.sharesCounter() {
				r = r.WithContext(context.WithValue(r.Context(), countedKey{}, outer.with(l.c, &ks, counts, resets)))
			}
			if wait := atLimit(ks.rules, counts, resets, false); wait > 0 {
				// A limiter inside this one that refuses the request
				// tells the client to wait this long too. Not for a
				// rule keyed by a name, which the RateLimit field leaves
				// out (see stateHeader): the wait would tell what the
				// field keeps from the sender of the name, and no member
				// would explain it.
				until := time.Now().Add(wait)
				if t, ok := r.Context().Value(admitKey{}).(time.Time); !ok || until.After(t) {
					r = r.WithContext(context.WithValue(r.Context(), admitKey{}, until))
				}
			}
			next.ServeHTTP(w, r)
			return
		}
		// The wait that admits the next request: every rule at its limit
		// refuses that one too, not only the rules this one was over (a
		// rule at exactly its limit, with a longer window, would otherwise
		// refuse a client that waited as told), and so do those of the
		// limiters around this one.
		retry := atLimit(ks.rules, counts, resets, true)
		if t, ok := r.Context().Value(admitKey{}).(time.Time); ok {
			retry = max(retry, time.Until(t))
		}
		addMembers(h, stateField, stateHeader(ks.rules, counts, resets, retry))
		h[retryField] = []string{strconv.FormatInt(seconds(retry), 10)}
		if l.cfg.OnLimited != nil {
			hw := &hookWriter{ResponseWriter: w, code: http.StatusTooManyRequests}
			l.cfg.OnLimited(hw, r, retry)
			hw.finish()
			return
		}
		tooMany(w, r, retry)
	})
}

// count counts a request in the rules of ks and returns, for each, the
// requests counted in its window and the time until the window ends; a
// rule that did not count the request has a count of -1 (and a reset of
// 0).
//
// The rules go in two stages. First those keyed by who sends the request
// (ByIP, ByUser, ByFunc); then, only if none of these refused it, those
// keyed by a name it carries (ByFormField, ByJSONField, ByName), whose
// value the sender chooses freely. A request refused by its address thus
// creates no counter for the user name it names, nor spends that name's
// attempts: otherwise one address past its own limit could still lock out
// every user it named, and fill Redis with their counters. A limiter whose
// rules are all of one kind counts in one stage, one round trip.
func (l *limiter) count(ctx context.Context, ks *keyed) (counts []int64, resets []time.Duration, err error) {
	named := 0
	for _, rule := range ks.rules {
		if rule.Key.named {
			named++
		}
	}
	if named == 0 || named == len(ks.rules) {
		return l.countKeys(ctx, ks.keys, ks.windows)
	}
	var who, what keyed
	var whoAt, whatAt []int // their rules' places in ks
	for i, rule := range ks.rules {
		if rule.Key.named {
			what.add(rule, ks.keys[i])
			whatAt = append(whatAt, i)
		} else {
			who.add(rule, ks.keys[i])
			whoAt = append(whoAt, i)
		}
	}
	counts = make([]int64, len(ks.rules))
	resets = make([]time.Duration, len(ks.rules))
	for i := range counts {
		counts[i] = -1
	}
	c, r, err := l.countKeys(ctx, who.keys, who.windows)
	if err != nil {
		return nil, nil, err
	}
	refused := false
	for j, i := range whoAt {
		counts[i], resets[i] = c[j], r[j]
		refused = refused || c[j] > int64(who.rules[j].Limit)
	}
	if refused {
		return counts, resets, nil
	}
	c, r, err = l.countKeys(ctx, what.keys, what.windows)
	if err != nil {
		return nil, nil, err
	}
	for j, i := range whatAt {
		counts[i], resets[i] = c[j], r[j]
	}
	return counts, resets, nil
}

// countedKey is the context key of the counted a limiter hands the
// handler it admits a request to.
type countedKey struct{}

// admitKey is the context key of the time.Time at which the limiters a
// request passed admit the next one, set by those that have a rule keyed
// by its sender at exactly its limit (see atLimit): a limiter inside them
// that refuses the request says to wait until then at least.
type admitKey struct{}

// atLimit returns how long until every rule of rules whose count is at or
// over its limit admits a request again: the longest of their resets, 0
// when none is. Rules keyed by a name count only when named is true.
func atLimit(rules []*Rule, counts []int64, resets []time.Duration, named bool) time.Duration {
	var wait time.Duration
	for i, rule := range rules {
		if counts[i] >= int64(rule.Limit) && (named || !rule.Key.named) {
			wait = max(wait, resets[i])
		}
	}
	return wait
}

// counted is what the limiters a request passed counted it in: a limiter
// inside another that shares one of its counters (a rule of the same name,
// key value and Secret, on the same counter) reads the count from here
// instead of counting the request a second time, which would halve the
// limit for every client. Each entry stands for one request, and serves
// one limiter: the context it travels in may carry more requests, made
// from it by the handler (a batch endpoint's sub-requests, a retry), each
// of which must be counted.
type counted struct {
	counter RateCounter
	keys    []string
	rules   []*Rule
	counts  []int64
	resets  []time.Duration
	taken   []atomic.Bool // set for an entry once find has handed it out
	outer   *counted      // an earlier limiter's, or nil
}

// find returns the entry of key on counter c in k or the counted of the
// limiters around it that no other limiter has taken: the counter's count
// of this request, its reset, and the rule that counted it. ok is false
// when none did, or another limiter took the count already: the request
// is then another one made on the same context, and counted anew.
func (k *counted) find(c RateCounter, key string) (count int64, reset time.Duration, rule *Rule, ok bool) {
	for ; k != nil; k = k.outer {
		if !sameCounter(k.counter, c) {
			continue
		}
		if i := slices.Index(k.keys, key); i >= 0 && k.taken[i].CompareAndSwap(false, true) {
			return k.counts[i], k.resets[i], k.rules[i], true
		}
	}
	return 0, 0, nil, false
}

// with returns k with what the limiter of counter c counted: the rules of
// ks and their counts and resets.
func (k *counted) with(c RateCounter, ks *keyed, counts []int64, resets []time.Duration) *counted {
	return &counted{counter: c, keys: ks.keys, rules: ks.rules, counts: counts, resets: resets,
		taken: make([]atomic.Bool, len(ks.keys)), outer: k}
}

// sharedNames records, for each counter and rule name, whether two
// limiters have a rule of that name on that counter: only then may one run
// inside the other and count a request in the same counter (see counted),
// and only then does a limiter hand its counts to the handler, which costs
// the request a copy of itself, allocated as the request passes (3
// allocations, about 500 bytes; up to about 5% of an admitted request's
// time in paired runs of BenchmarkRateLimit). (A limiter that
// wraps two handlers counts as two: see limiter.middleware.) The table
// holds each counter it has seen for the life of the program, as an app
// holds its Store (a Store closed and replaced stays in memory, its
// near-cache's entries with it): were it to forget a freed one, another
// counter allocated at its address would be taken for it.
var sharedNames struct {
	sync.Mutex
	flags map[sharedKey]*atomic.Bool
}

// sharedKey is a counter, a pointer (see sameCounter), and a rule name.
type sharedKey struct {
	counter RateCounter
	name    string
}

// sharedName returns the flag of rule name on counter c, set once a
// second limiter has a rule of that name on c; nil for a counter that is
// not a pointer, which is never shared (see sameCounter).
func sharedName(c RateCounter, name string) *atomic.Bool {
	if reflect.TypeOf(c).Kind() != reflect.Pointer {
		return nil
	}
	key := sharedKey{c, name}
	sharedNames.Lock()
	defer sharedNames.Unlock()
	if sharedNames.flags == nil {
		sharedNames.flags = make(map[sharedKey]*atomic.Bool)
	}
	flag, seen := sharedNames.flags[key]
	if !seen {
		flag = new(atomic.Bool)
		sharedNames.flags[key] = flag
	}
	flag.Store(seen)
	return flag
}

// sharesCounter reports whether another limiter has a rule of the name of
// one of l's rules on l's counter.
func (l *limiter) sharesCounter() bool {
	for _, f := range l.shared {
		if f != nil && f.Load() {
			return true
		}
	}
	return false
}

// sameCounter reports whether a and b are one counter: the same pointer
// (a *redisstore.Store). Counters of other kinds are never taken for one,
// so each counts the request as it would alone; comparing them with ==
// would panic for a type that is not comparable.
func sameCounter(a, b RateCounter) bool {
	return reflect.TypeOf(a) == reflect.TypeOf(b) && reflect.TypeOf(a).Kind() == reflect.Pointer && a == b
}

// countOnce is count for the rules of ks whose counters the limiters
// around this one (outer) did not count the request in. The others take
// the count those got, and the one of the two rules with the lower Limit,
// which binds the client (both limiters admit it only within that one),
// in the answer's headers too. A request is thus counted once in each
// counter, however many limiters share it.
func (l *limiter) countOnce(ctx context.Context, ks *keyed, outer *counted) ([]int64, []time.Duration, error) {
	if outer == nil {
		return l.count(ctx, ks)
	}
	counts := make([]int64, len(ks.rules))
	resets := make([]time.Duration, len(ks.rules))
	known := make([]bool, len(ks.rules))
	refused := false // by a rule keyed by the sender that the limiters around counted
	for i, key := range ks.keys {
		count, reset, rule, ok := outer.find(l.c, key)
		if !ok || count < 0 {
			continue
		}
		known[i], counts[i], resets[i] = true, count, reset
		if rule.Limit < ks.rules[i].Limit {
			ks.rules[i] = rule
		}
		refused = refused || !ks.rules[i].Key.named && count > int64(ks.rules[i].Limit)
	}
	fresh := newKeyed(len(ks.rules))
	var freshAt []int // their places in ks
	for i, rule := range ks.rules {
		switch {
		case known[i]:
		case refused && rule.Key.named:
			// As in count: a request its sender's rule refused spends
			// no attempt of the name it names.
			counts[i] = -1
		default:
			fresh.add(rule, ks.keys[i])
			freshAt = append(freshAt, i)
		}
	}
	if len(freshAt) == 0 {
		return counts, resets, nil
	}
	c, r, err := l.count(ctx, &fresh)
	if err != nil {
		return nil, nil, err
	}
	for j, i := range freshAt {
		counts[i], resets[i] = c[j], r[j]
	}
	return counts, resets, nil
}

// countKeys asks the counter to count keys, and checks that it answered
// a count and a reset for each.
func (l *limiter) countKeys(ctx context.Context, keys []string, windows []time.Duration) ([]int64, []time.Duration, error) {
	counts, resets, err := l.c.CountRequests(ctx, keys, windows)
	if err == nil && (len(counts) != len(keys) || len(resets) != len(keys)) {
		err = errCounterReply
	}
	return counts, resets, err
}

// outage serves or refuses r after the counter failed with err.
func (l *limiter) outage(w http.ResponseWriter, r *http.Request, next http.Handler, rules []*Rule, err error) {
	names := make([]string, len(rules))
	for i, rule := range rules {
		names[i] = rule.Name
	}
	policy := "closed"
	if l.failOpen {
		policy = "open"
	}
	l.outages.Do(time.Now(), func(suppressed int) {
		l.cfg.Logger.LogAttrs(r.Context(), slog.LevelWarn, "rate limit: counter failed",
			slog.String("rules", strings.Join(names, ",")), slog.String("outage", policy),
			slog.Any("error", err), slog.Int("suppressed", suppressed))
	})
	if l.cfg.Metrics != nil {
		l.cfg.Metrics.RateLimitUnavailable(l.failOpen)
	}
	if l.failOpen {
		next.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Retry-After", "1")
	if l.cfg.OnUnavailable != nil {
		hw := &hookWriter{ResponseWriter: w, code: http.StatusServiceUnavailable}
		l.cfg.OnUnavailable(hw, r)
		hw.finish()
		return
	}
	writeError(w, r, http.StatusServiceUnavailable, "rate limiter unavailable", "The service is busy. Please try again in a moment.")
}

// hookWriter is the writer OnLimited, OnTooLarge and OnUnavailable answer
// with: until they call WriteHeader, their answer has the status code, so
// that a page written with Write alone, or nothing written at all, is not
// a 200 that reads as success.
type hookWriter struct {
	http.ResponseWriter
	code  int
	wrote bool // the header went out
}

// WriteHeader implements http.ResponseWriter.
func (w *hookWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

// finish writes the header with w.code if nothing did yet.
func (w *hookWriter) finish() {
	if !w.wrote {
		w.WriteHeader(w.code)
	}
}

// Write implements http.ResponseWriter.
func (w *hookWriter) Write(b []byte) (int, error) {
	w.finish()
	return w.ResponseWriter.Write(b)
}

// WriteString implements io.StringWriter.
func (w *hookWriter) WriteString(s string) (int, error) {
	w.finish()
	return io.WriteString(w.ResponseWriter, s)
}

// Flush implements http.Flusher.
func (w *hookWriter) Flush() {
	w.FlushError()
}

// FlushError is Flush for http.ResponseController: it writes the header
// with w.code first if nothing did yet, as Write does.
func (w *hookWriter) FlushError() error {
	w.finish()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *hookWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}

// outageLogInterval is how often a limiter logs that its counter fails:
// during an outage every request fails, and the log must not grow with the
// traffic.
const outageLogInterval = 10 * time.Second

// keyed holds the rules that count a request, with their Redis keys and
// windows, in the order of the limiter's rules.
type keyed struct {
	rules   []*Rule
	keys    []string
	windows []time.Duration
}

// newKeyed returns a keyed with room for n rules.
func newKeyed(n int) keyed {
	return keyed{
		rules:   make([]*Rule, 0, n),
		keys:    make([]string, 0, n),
		windows: make([]time.Duration, 0, n),
	}
}

func (k *keyed) add(r *Rule, key string) {
	k.rules = append(k.rules, r)
	k.keys = append(k.keys, key)
	k.windows = append(k.windows, r.Window)
}

// readBody reads all of body, or fails with errBodyTooLarge past max bytes.
func readBody(body io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, errBodyTooLarge
	}
	return b, nil
}

// seconds returns d in whole seconds, rounded up, at least 1: a client
// told 0 would retry at once.
func seconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// The header fields a limiter sets, in canonical form (Header.Set would
// canonicalize "RateLimit-Policy" anew on every request).
var (
	policyField = http.CanonicalHeaderKey("RateLimit-Policy")
	stateField  = http.CanonicalHeaderKey("RateLimit")
	retryField  = http.CanonicalHeaderKey("Retry-After")
)

// policyHeader formats the RateLimit-Policy field: one list member per
// rule, `"name";q=<limit>;w=<window seconds>`.
func policyHeader(rules []*Rule) string {
	var b strings.Builder
	b.Grow(48 * len(rules))
	for i, r := range rules {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('"')
		b.WriteString(r.Name)
		b.WriteString(`";q=`)
		b.WriteString(strconv.Itoa(r.Limit))
		b.WriteString(";w=")
		b.WriteString(strconv.FormatInt(int64(r.Window/time.Second), 10))
	}
	return b.String()
}

// addMembers sets the list field key of h to the members of list (as
// policyHeader and stateHeader write them, each `"name";...`), after those
// the field already holds: a limiter that runs inside another adds its
// rules to the outer one's, which bind the client all the same, and its
// member replaces one of the outer one's of the same rule name.
func addMembers(h http.Header, key, list string) {
	if list == "" {
		return
	}
	old := h[key]
	if len(old) == 0 {
		h[key] = []string{list}
		return
	}
	names := make(map[string]bool)
	for member := range strings.SplitSeq(list, ", ") {
		name, _, _ := strings.Cut(member, ";")
		names[name] = true
	}
	var b strings.Builder
	for _, v := range old {
		for member := range strings.SplitSeq(v, ", ") {
			name, _, _ := strings.Cut(member, ";")
			if member == "" || names[name] {
				continue
			}
			b.WriteString(member)
			b.WriteString(", ")
		}
	}
	b.WriteString(list)
	h[key] = []string{b.String()}
}

// stateHeader formats the RateLimit field: one list member per rule that
// counted the request (a count of -1 did not, see count) and is keyed by
// its sender, `"name";r=<remaining>;t=<seconds until the window ends>`. A
// rule keyed by a name (Key.named) is left out: its counter is everyone's
// who sends that user name, its owner's sign-ins included, and would tell
// any sender of the name whether, and when, someone else tried it. Only
// when such a rule refuses the request (retry, the answer's Retry-After,
// is then above zero) is it listed, as `r=0;t=<Retry-After>`, which tells
// no more than the 429 and its Retry-After do: a client reading the
// field then sees the rule that refused it, not only the others'
// remaining requests.
func stateHeader(rules []*Rule, counts []int64, resets []time.Duration, retry time.Duration) string {
	var b strings.Builder
	b.Grow(48 * len(rules))
	for i, r := range rules {
		if counts[i] < 0 {
			continue
		}
		remaining, reset := max(int64(r.Limit)-counts[i], 0), resets[i]
		if r.Key.named {
			if retry <= 0 || counts[i] <= int64(r.Limit) {
				continue
			}
			remaining, reset = 0, retry
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('"')
		b.WriteString(r.Name)
		b.WriteString(`";r=`)
		b.WriteString(strconv.FormatInt(remaining, 10))
		b.WriteString(";t=")
		b.WriteString(strconv.FormatInt(seconds(reset), 10))
	}
	return b.String()
}

// tooMany answers 429 with a JSON body, or an HTML page for a client that
// accepts one.
func tooMany(w http.ResponseWriter, r *http.Request, retry time.Duration) {
	s := seconds(retry)
	if acceptsHTML(r) {
		writeHTML(w, http.StatusTooManyRequests, "Too many requests. Please try again in "+waitText(s)+".")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusTooManyRequests)
	fmt.Fprintf(w, `{"error":"too many requests","retry_after":%d}`+"\n", s)
}

// waitText says how long s seconds is, in words: "1 second", "5 minutes".
func waitText(s int64) string {
	n, unit := s, "second"
	switch {
	case s >= 2*3600:
		n, unit = (s+3599)/3600, "hour"
	case s >= 120:
		n, unit = (s+59)/60, "minute"
	}
	if n != 1 {
		unit += "s"
	}
	return strconv.FormatInt(n, 10) + " " + unit
}

// writeError answers code with msg as {"error": msg}, or with text in an
// HTML page for a client that accepts one. msg and text are constants of
// this package, so they need no escaping.
func writeError(w http.ResponseWriter, r *http.Request, code int, msg, text string) {
	if acceptsHTML(r) {
		writeHTML(w, code, text)
		return
	}
	writeJSONError(w, code, msg)
}

// writeHTML answers code with a minimal page saying text, which holds no
// markup and no input of the request.
func writeHTML(w http.ResponseWriter, code int, text string) {
	writeHeader(w, code, "text/html; charset=utf-8")
	io.WriteString(w, "<!doctype html>\n<title>"+http.StatusText(code)+"</title>\n<p>"+text+"</p>\n")
}

// acceptsHTML reports whether the client asked for an HTML answer (a
// browser, which also sends it with a form's POST).
func acceptsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}
