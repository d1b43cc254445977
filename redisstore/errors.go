package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// Every error of a Store call that Redis, the network or the call's time
// bound caused matches one of these with errors.Is, so that callers decide
// without reading error strings. Two kinds match none: invalid arguments
// (a negative time to live, say), and a call whose context its caller
// cancelled, which matches context.Canceled.
var (
	// ErrUnavailable marks a failure Redis is expected to get over by
	// itself: the network, a timeout, an exhausted pool, one of the
	// replies LOADING (restarting), READONLY (a replica, as during a
	// fail-over), OOM, MASTERDOWN, BUSY or NOREPLICAS, EXECABORT (a
	// transaction refused, as a Redis out of memory refuses them), on a
	// Redis Cluster its MOVED, ASK, TRYAGAIN or CLUSTERDOWN for as long as
	// they last past the call's retries, or fewer replicas confirming a
	// write than Config.WaitReplicas asks for. Answer 503 and try again
	// later.
	ErrUnavailable = errors.New("redisstore: redis unavailable")

	// ErrRefused marks a failure that will not go away by itself: any other
	// error reply, such as NOAUTH or WRONGPASS (credentials), NOPERM (ACL),
	// WRONGTYPE (another program writes under the key prefix) or an unknown
	// command (a Redis too old); outside a Cluster, a Cluster node's MOVED,
	// ASK, TRYAGAIN or CLUSTERDOWN (a Cluster node configured as one
	// server); a server certificate that does not verify; and a TLS
	// handshake the server refuses with an alert of its configuration (a
	// client certificate it requires or does not take, a TLS version it
	// does not offer). Fix the configuration.
	ErrRefused = errors.New("redisstore: redis refused the request")

	// ErrContention marks an optimistic transaction (WATCH, then
	// MULTI/EXEC) that, within the call's time budget, found what it
	// watched changed by other writers on every attempt, or on one and
	// then ran out of time, or waited its turn behind calls that did. It
	// is no outage: the writers that won got through; a slow or paused
	// Redis during a burst of such writes gives it too. The call may be
	// tried again. It has a method Contention() bool that reports true, by
	// which package session tells it from an outage without importing this
	// package.
	ErrContention error = contention{}

	// ErrKeepGone is what RemoveUserSessions returns, having deleted
	// nothing, when the session it was asked to keep is not in the user's
	// index: a renewal moved it to a new id, or it ended. Redis is
	// healthy. It has a method KeepGone() bool that reports true, by which
	// package session looks for the session's new id without importing
	// this package.
	ErrKeepGone error = keepGone{}

	// ErrReplacedGone is what AddUserSession with a limit returns, having
	// written nothing, when the record of the session the new one
	// replaces is gone: a renewal moved it to a new id, which would count
	// against the limit, or it ended. Redis is healthy. It has a method
	// ReplacedGone() bool that reports true, by which package session ends
	// that session where it went first, then adds the new one alone.
	ErrReplacedGone error = replacedGone{}
)

type contention struct{}

func (contention) Error() string { return "redisstore: concurrent writers kept changing the keys" }

// Contention reports true: see ErrContention.
func (contention) Contention() bool { return true }

type keepGone struct{}

func (keepGone) Error() string {
	return "redisstore: the session to keep is not among the user's sessions"
}

// KeepGone reports true: see ErrKeepGone.
func (keepGone) KeepGone() bool { return true }

type replacedGone struct{}

func (replacedGone) Error() string {
	return "redisstore: the session a login replaces is gone"
}

// ReplacedGone reports true: see ErrReplacedGone.
func (replacedGone) ReplacedGone() bool { return true }

// transientReplies are the error codes of ErrUnavailable.
var transientReplies = map[string]bool{
	"LOADING": true, "READONLY": true, "OOM": true, "MASTERDOWN": true,
	"BUSY": true, "NOREPLICAS": true,
	// A Redis Cluster moving slots or failing over; see notRunReplies.
	"MOVED": true, "ASK": true, "TRYAGAIN": true, "CLUSTERDOWN": true, "EXECABORT": true,
}

// clusterReplies are the error codes only a Redis Cluster node gives. A
// Store configured for one server or for Sentinel that gets one talks to a
// Cluster node, which no retry mends: they are ErrRefused there, and
// Describe names the setting.
var clusterReplies = map[string]bool{"MOVED": true, "ASK": true, "TRYAGAIN": true, "CLUSTERDOWN": true, "CROSSSLOT": true}

// notRunReplies are the error codes with which a Redis Cluster refuses a
// command it did not run because its slot is moving or has no master yet:
// MOVED and ASK (the slot is served elsewhere), TRYAGAIN (a multi-key
// command during a slot's migration), CLUSTERDOWN (no master for the slot),
// and EXECABORT (a transaction of which a queued command got one of those:
// none of it ran).
var notRunReplies = map[string]bool{
	"MOVED": true, "ASK": true, "TRYAGAIN": true, "CLUSTERDOWN": true, "EXECABORT": true,
}

// tooManyClients reports whether reply is Redis's refusal of a connection
// over its maxclients, which it sends in place of the reply to the
// connection's first command before it closes it: an overload, over as
// soon as other clients close theirs, and no refusal of the request. A
// Cluster node says "ERR max number of clients + cluster connections
// reached", one server "ERR max number of clients reached".
func tooManyClients(reply redis.Error) bool {
	return strings.HasPrefix(string(reply), "ERR max number of clients ")
}

// replyCode returns the code of the Redis error reply in err, such as
// "OOM" or "EXECABORT", or "" when err holds none.
func replyCode(err error) string {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return ""
	}
	code, _, _ := strings.Cut(string(reply), " ")
	return code
}

// outOfMemory reports whether err is Redis's refusal of a transaction for
// want of memory: every command queued in it is refused with OOM (which a
// pipelined EXEC reports first), and EXEC with EXECABORT. Outside a
// Cluster nothing else refuses a transaction's commands as they are
// queued but an ACL (NOPERM) or a broken command; on one (cluster true),
// a moving slot does too (MOVED, then EXECABORT), so only OOM counts.
func outOfMemory(err error, cluster bool) bool {
	code := replyCode(err)
	return code == "OOM" || (!cluster && code == "EXECABORT")
}

// notRun reports whether err says that no command of the call ran, so that
// it may be tried again whole: no connection could be had, for another
// reason than a refused TLS handshake (which trying again does not mend,
// only dials again until the call's Timeout), or for a node over its
// maxclients (see tooManyClients: over as others close theirs, as a
// refused dial); or a Redis Cluster answered with one of
// notRunReplies.
func notRun(err error) bool {
	var nc errNoConn
	noConn := errors.As(err, &nc)
	var reply redis.Error
	if noConn && errors.As(err, &reply) && tooManyClients(reply) {
		return true
	}
	if code := replyCode(err); code != "" {
		return notRunReplies[code]
	}
	return noConn && !errors.Is(err, errClosed) && !tlsRefused(err)
}

// tlsRefused reports whether err is a TLS handshake that one side refused
// for its configuration: the server's certificate did not verify, or the
// server sent one of refusalAlerts (a client certificate it requires, or
// does not take; a TLS version or cipher it does not offer). No retry
// mends that. Another alert (internal error, close notify) may be the
// server's passing trouble: it stays an outage.
func tlsRefused(err error) bool {
	var cert *tls.CertificateVerificationError
	var op *net.OpError
	// crypto/tls reports a peer's alert as a *net.OpError whose Op is
	// "remote error", around a type it does not export, whose text is
	// "tls: " and the alert's name.
	return errors.As(err, &cert) ||
		errors.As(err, &op) && op.Op == "remote error" && op.Err != nil && refusalAlerts[strings.TrimPrefix(op.Err.Error(), "tls: ")]
}

// refusalAlerts are the TLS alerts, by the names crypto/tls gives them,
// with which a server refuses a handshake for its configuration or the
// client's.
var refusalAlerts = map[string]bool{
	"handshake failure":               true,
	"bad certificate":                 true,
	"unsupported certificate":         true,
	"revoked certificate":             true,
	"expired certificate":             true,
	"unknown certificate":             true,
	"unknown certificate authority":   true,
	"access denied":                   true,
	"protocol version not supported":  true,
	"insufficient security level":     true,
	"certificate required":            true,
	"unrecognized name":               true,
	"no application protocol":         true,
	"encrypted client hello required": true,
}

// classify wraps the error of operation op with ErrUnavailable, ErrRefused
// or ErrContention; cluster says whether the Store is on a Redis Cluster.
func classify(op string, err error, cluster bool) error {
	if errors.Is(err, ErrContention) {
		return fmt.Errorf("%w (%s)", ErrContention, op)
	}
	if errors.Is(err, context.Canceled) {
		// Only the caller cancels (the Store's own bounds are deadlines):
		// a client that went away says nothing about Redis.
		if safe := safeText(err); safe != err.Error() {
			return &redactedError{msg: fmt.Sprintf("redisstore: %s: %s", op, safe), err: err}
		}
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	class := ErrUnavailable
	if errors.Is(err, errIDTaken) {
		class = ErrRefused // a broken random source does not mend itself
	}
	var reply redis.Error
	switch {
	case errors.As(err, &reply):
		code := replyCode(reply)
		if !transientReplies[code] && !tooManyClients(reply) || (!cluster && clusterReplies[code]) {
			class = ErrRefused
		}
	case tlsRefused(err):
		class = ErrRefused
	}
	if safe := safeText(err); safe != err.Error() {
		return &redactedError{msg: fmt.Sprintf("%v (%s): %s", class, op, safe), class: class, err: err}
	}
	return fmt.Errorf("%w (%s): %w", class, op, err)
}

// safeText returns the text of err without what no error or log line of
// the Store may carry: the arguments a Redis reply echoed (session keys;
// see echoedArgs) and a password in a URL (see urlSafeText).
func safeText(err error) string {
	return replaceRestOfLine(urlSafeText(err), echoedArgs, " (arguments not shown)")
}

// echoedArgs is where a Redis error reply starts repeating the arguments of
// the command it refused, as "ERR unknown command 'GETEX', with args
// beginning with: 'session:...' 'PX' ..." does (a command a managed Redis
// renamed or disabled): the arguments hold session keys, which no error
// may carry.
const echoedArgs = ", with args beginning with:"

// replaceRestOfLine returns msg with each from, and what follows it up to
// the end of its line, replaced by with.
func replaceRestOfLine(msg, from, with string) string {
	var b strings.Builder
	for {
		i := strings.Index(msg, from)
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		b.WriteString(msg[:i])
		b.WriteString(with)
		msg = msg[i:]
		if j := strings.IndexByte(msg, '\n'); j >= 0 {
			msg = msg[j:]
		} else {
			msg = ""
		}
	}
}

// urlSafeText returns the text of err with the detail of any URL parsing
// error in it (*url.Error's, which quotes pieces of the URL, such as a
// password taken for a port: `invalid port ":pw" after host`) replaced by
// "malformed URL" (and the URL it quotes by "<scheme>://[not shown]" when
// no "@" is left in it), what follows redigo DialURL's "invalid database: " and
// "url is opaque: " (the URL's path or opaque part, which hold the remains
// of a password with a "/" in a malformed URL) by "[not shown]", and the
// userinfo of every URL of a scheme DialURL dials (urlSchemes: redis://,
// rediss://, valkey://, valkeys://) by "[redacted]". The
// userinfo runs to the last "@" on the line, since a password may hold
// what would end a URL ("/", a space): it may take more than the
// userinfo, never less. A pool's dial function that dials a URL (redigo's
// DialURL) returns such errors: url.Parse's quotes the whole URL, password
// included, when the password holds a character that ends the host, such
// as an unescaped "/". The Store logs and returns the errors that may come
// from a caller's dial function only through it (see safeText).
func urlSafeText(err error) string {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		if detail := ue.Err.Error(); detail != "" {
			msg = strings.ReplaceAll(msg, detail, "malformed URL")
		}
		// url.Parse quotes the URL without what follows a "#", so a
		// password holding one is quoted without the "@" that would tell
		// its userinfo from a host and port ("redis://app:pw"): such a
		// quote is not shown at all.
		if scheme, rest, ok := strings.Cut(ue.URL, "://"); ok && !strings.Contains(rest, "@") {
			msg = strings.ReplaceAll(msg, strconv.Quote(ue.URL), strconv.Quote(scheme+"://[not shown]"))
		}
	}
	for _, echo := range []string{"invalid database: ", "url is opaque: "} {
		msg = replaceRestOfLine(msg, echo, echo+"[not shown]")
	}
	var b strings.Builder
	for {
		i := strings.Index(msg, "://")
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		start := i + len("://")
		scheme := strings.ToLower(msg[:i])
		if !slices.ContainsFunc(urlSchemes, func(s string) bool { return strings.HasSuffix(scheme, s) }) {
			b.WriteString(msg[:start])
			msg = msg[start:]
			continue
		}
		line := len(msg)
		if j := strings.IndexByte(msg[start:], '\n'); j >= 0 {
			line = start + j
		}
		at := strings.LastIndexByte(msg[start:line], '@')
		if at < 0 {
			b.WriteString(msg[:start])
			msg = msg[start:]
			continue
		}
		b.WriteString(msg[:start])
		b.WriteString("[redacted]")
		msg = msg[start+at:] // from the "@"
	}
}

// urlSchemes are the schemes of the URLs redigo's DialURL dials, whose
// userinfo urlSafeText hides.
var urlSchemes = []string{"redis", "rediss", "valkey", "valkeys"}

// redactedError is a classified error whose text is safeText's. errors.Is
// and errors.As still find its class and the error whose text it hides,
// but it unwraps to its class alone: a program that walks a chain of
// errors by Unwrap and prints each (as error trackers do) would print the
// hidden error's text, password or session keys included.
type redactedError struct {
	msg   string
	class error // nil for none
	err   error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Unwrap() error        { return e.class }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
func (e *redactedError) As(target any) bool   { return errors.As(e.err, target) }
