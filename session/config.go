package session

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sessionkit/sessionkit/internal/keycheck"
	"github.com/sessionkit/sessionkit/internal/redact"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultLifetime    = 24 * time.Hour
	DefaultIdleTimeout = 30 * time.Minute

	DefaultLastSeenInterval = time.Minute

	// DefaultCookieName is the cookie name of a Secure cookie. The __Host-
	// prefix makes browsers refuse the cookie unless it is Secure, has
	// Path=/ and no Domain, so a sibling subdomain cannot overwrite it.
	DefaultCookieName = "__Host-session"

	// DefaultInsecureCookieName is the cookie name when InsecureCookie is set.
	DefaultInsecureCookieName = "session"

	// MinKeyLength is the shortest signing key accepted, in bytes.
	MinKeyLength = 32

	// DefaultMaxRecordBytes is the default of Config.MaxRecordBytes, 64
	// KiB: far above what a login needs (a few hundred bytes), with room
	// for a cart or a form's state. Every request of a session reads its
	// whole record within the store's timeout, so a record this size costs
	// each of its requests about a quarter of a millisecond more (the
	// transfer and the decoding, on a local Redis) and its session 64 KiB
	// of Redis memory. A record of a megabyte costs milliseconds a
	// request, and one of a hundred megabytes outlasts the store's default
	// timeout (1s): every request of its session would get 503 while Redis
	// is healthy.
	DefaultMaxRecordBytes = 64 << 10
)

// maxRecordBytes bounds Config.MaxRecordBytes: Redis stores no larger
// string (proto-max-bulk-len), so no record is larger.
const maxRecordBytes = 512 << 20

// maxLifetime bounds Config.Lifetime: a century keeps every deadline within
// what a token and a record hold (the end of year 9999).
const maxLifetime = 100 * 365 * 24 * time.Hour

// Config configures a Manager. The zero value of every field but Keys is a
// safe default; New validates the whole struct once and never reads it again.
type Config struct {
	// Keys sign the token carried in the cookie or the Authorization header
	// with HMAC-SHA256. The first key signs, every key verifies, so a key is
	// rotated by putting the new one first and dropping the old one once the
	// sessions it signed have expired. With several instances, add the new
	// key last everywhere first, then move it first: an instance that does
	// not know a key refuses the tokens it signed (docs/security.md, "Key
	// rotation"). At least one key is required; each must be at least
	// MinKeyLength random bytes. New refuses a key with fewer than 8
	// distinct byte values, or with a run of 8 bytes twice, which random
	// bytes all but never have: a buffer never filled, or a placeholder
	// repeated.
	Keys [][]byte

	// Lifetime is the absolute timeout: a session is never accepted after
	// Lifetime has passed since it was created, however active it is. A
	// session keeps the deadline it was created with, but an instance
	// with a shorter Lifetime ends it at its creation plus that Lifetime:
	// after Lifetime shrinks, no session outlives the new one, renewed or
	// not (see MaxSessionsPerUser for what such sessions still count for).
	// Zero means DefaultLifetime (24h); otherwise 1ms to 100 years.
	// Browsers keep a cookie at most 400 days, and the cookie is sent again
	// only at a login or a Renew: over 400 days, Renew a session within 400
	// days of its last cookie, or its browser drops the cookie first.
	Lifetime time.Duration

	// IdleTimeout ends a session that has not been used for this long. Every
	// request extends it in the same Redis command that reads the session
	// (with the near-cache, a read from Redis at most every
	// NearCache.ExtendEvery, so an idle session may end a little early:
	// docs/near-cache.md). A request that outlasts it finds its session
	// ended at the commit, and its changes are dropped.
	// Zero means DefaultIdleTimeout (30m); a negative value disables the idle
	// timeout, leaving only Lifetime; otherwise at least 1ms. Turned off,
	// it leaves the records written while it was on with their time to
	// live (a read is then a plain GET): an anonymous session ends at the
	// old idle timeout after its last write.
	IdleTimeout time.Duration

	// CookieName is the name of the session cookie. Zero means
	// DefaultCookieName ("__Host-session"), or DefaultInsecureCookieName
	// ("session") when InsecureCookie is set. Keep the __Host- prefix in
	// a name of your own: without it a sibling subdomain can set a cookie
	// of the same name that the browser sends first, which shadows the
	// session (a logout, as the request reads no session) or plants one of
	// the attacker's choosing for the next login to carry over.
	CookieName string

	// InsecureCookie drops the Secure attribute, so the cookie is also sent
	// over plain HTTP. Only for development on localhost: the Manager logs
	// a warning, once, when a request comes over HTTPS (TLS, or as a
	// proxy says in X-Forwarded-Proto, Forwarded or X-Forwarded-Ssl).
	// False (the default) sends the cookie over HTTPS only; browsers then
	// keep it only from HTTPS or plain http://localhost (and loopback
	// addresses), so the Manager logs a warning, once, when it sets the
	// cookie in answer to a plain-HTTP request to another host (a login
	// that would not stick in a browser).
	InsecureCookie bool

	// SameSite is the cookie's SameSite attribute. Zero means
	// http.SameSiteLaxMode. http.SameSiteNoneMode requires a Secure cookie.
	// A cross-site request that came without the cookie, where SameSite
	// keeps it back, starts no anonymous session (see Put): under Strict
	// a link from another site to a page that stores a value for visitors
	// would otherwise sign its user out.
	SameSite http.SameSite

	// KeepSiteData leaves out the Clear-Site-Data: "cookies" header of a
	// logout response (OWASP ASVS 14.3.1). Browsers apply that header to
	// the whole registrable domain, subdomains included: a logout on
	// app.example.com deletes every cookie of example.com,
	// www.example.com and every other app under example.com, and their
	// HTTP authentication credentials, not only this Manager's cookie.
	// Set it when other sites or apps share the registrable domain; a
	// logout still expires the session cookie and sends Cache-Control:
	// no-store. A Manager whose middleware runs inside another Manager's
	// (a site and its /admin/) never sends the header, which would delete
	// the outer Manager's cookie too; nor does one with InsecureCookie
	// reached over plain HTTP under a host name other than localhost or a
	// loopback address: browsers take the header from secure contexts only, and
	// Chromium then drops the response's Set-Cookie lines, the cookie's
	// expiry included. False (the default) sends it.
	KeepSiteData bool

	// MaxSessionsPerUser limits how many sessions one user may have at
	// once. A login beyond the limit revokes the user's oldest sessions, in
	// the same transaction that creates the new one. Sessions are ordered
	// by their absolute deadline in whole milliseconds: the time their
	// login started, before it waited its turn in the store, plus
	// Lifetime. So under a burst of logins of one user a session a few
	// milliseconds newer than one that stays may be revoked, and sessions
	// whose logins started in the same millisecond are in no set order;
	// after Lifetime shrinks, sessions made under the longer one count as
	// newer than later logins, and towards the limit until their first
	// deadline, though Lifetime ended them. A login that fails with
	// ErrStoreUnavailable after Redis may have run its transaction (it
	// timed out, or its connection broke, as when a master fails) removes
	// the new session again, best effort, so that the login tried again
	// does not revoke a session for it; sessions the limit revoked, if
	// it ran, stay ended, with no EventRevoked: their ids were in the
	// reply that was lost. Zero means no limit.
	MaxSessionsPerUser int

	// MaxRecordBytes is the largest encoded record a session may have, in
	// bytes. Put refuses, with ErrInvalidValue, a value that would take
	// the record over it, by an estimate from the record as the request
	// loaded it and the values the request put and removed since. Where
	// the record is written, its real size decides: a record that would
	// still be over it (values that parallel requests put pass it
	// together, once merged) is not written, and Commit (or Renew)
	// returns an error matching ErrInvalidValue, which
	// middleware.Sessions answers with 500 {"error":"session too large"}.
	// A login (Create) carries over none of an anonymous session's values
	// that would take its record over it, and logs a warning; a limit
	// that even a record without values passes fails every login with
	// ErrInvalidValue.
	// A record already over it (written under a higher limit, or by
	// another program) still loads, and requests that put no value in it
	// (a last-seen refresh, a renewal, removals) still write it. Zero
	// means DefaultMaxRecordBytes (64 KiB); a negative value means no
	// limit; at most 512 MiB, the largest string Redis stores by default.
	MaxRecordBytes int

	// LastSeenInterval is how stale a session's last-seen time may get: a
	// request that finds it older than this writes the record to refresh
	// it, which costs that request a merge (two more round trips, as any
	// change to a stored session does); when that write fails, the
	// request, which changed nothing, is served all the same, and the
	// Manager refreshes no last-seen time for 5 seconds, so that a Redis
	// that refuses writes but serves reads (out of memory) is not sent
	// that failing write on every read. Zero means
	// DefaultLastSeenInterval (1m); a negative value refreshes it only when
	// the session is written anyway.
	LastSeenInterval time.Duration

	// TagKey, when set, puts a hash tag derived from it in every new
	// token and in the store's keys, so that each user's sessions and their
	// index share one Redis Cluster hash slot and can change in one
	// transaction; anonymous sessions get a tag of their own. It is
	// required with a store on a Redis Cluster (redisstore with
	// ClusterNodes) and harmless elsewhere. At least MinKeyLength random
	// bytes (checked as Keys are), none of Keys, the same on every
	// instance, and never rotated: a new TagKey
	// moves every user's index to another key, so List, Revoke, RevokeAll
	// and the session limit no longer see the sessions made before, until
	// they expire (RevokeOthers called from one of them ends those made
	// since, and the caller's own too should a parallel request renew it
	// meanwhile: it then returns ErrNoSession, which, while instances with
	// the earlier TagKey still run, it may also return when one of them
	// renewed it, alive, into the earlier index). Tokens signed without a
	// tag keep working, under the
	// keys they had. Outside a Cluster, a Manager with a TagKey still
	// lists and revokes the sessions made before it was set (the session
	// limit counts only those made after), but one without it does not
	// see those that a Manager with it made or renewed: set it on every
	// instance at once, or revoke only through instances that have it
	// while a rollout mixes them (README, "Upgrading"). On a Cluster, set
	// it before the first deployment. Nil (the default) tags nothing: keys
	// are exactly as without it. See the package redisstore documentation,
	// "Sentinel and Cluster".
	TagKey []byte

	// RetiredKeys are signing keys taken out of Keys. They verify nothing:
	// a token signed by one is refused like any other bad token, but
	// counted as RejectRetiredKey rather than RejectBadSignature in
	// Metrics, which tells a rotation gone wrong from an attack. Optional;
	// each at least MinKeyLength random bytes, checked as Keys are, and
	// none of Keys. Checked only for tokens that no
	// key in Keys verifies.
	RetiredKeys [][]byte

	// Metrics, when set, receives counts of session events, refused
	// tokens, requests served anonymous during an outage and failed
	// commits. Nil (the default) costs nothing.
	Metrics Metrics

	// OnEvent, when set, is called synchronously with every Event (login,
	// renewal, logout, revocation, expiry noticed, scs migration), for
	// audit logs. It must
	// be quick and must not call the Manager. Nil means events are only
	// logged.
	OnEvent func(Event)

	// FromSCS, when set, takes over the sessions of an application that
	// used github.com/alexedwards/scs/v2 (with scs's redisstore): a request
	// with scs's cookie and no session of its own gets its scs session
	// converted into one of this package's, once. See SCSImport and
	// docs/migrating-from-scs.md. Nil (the default) accepts no scs cookie
	// and costs nothing.
	FromSCS *SCSImport

	// DeviceName names the client of a new session for its user's list
	// of devices (Info.Device) from its user agent as a record keeps it
	// (at most 256 bytes, U+FFFD in place of bytes that are not UTF-8,
	// possibly empty): "Chrome 131 on Windows", say. It is called once,
	// when a session is created (a login, an anonymous session's first
	// write, an scs import), and what it returns, cut to 64 bytes of valid
	// UTF-8, is stored in the record as "d"; a record of version 1, which
	// has no name, is named from its user agent each time it is listed or
	// read. It must be safe for concurrent use; a panic in it is not
	// recovered, but reaches the handler that created the session, as a
	// panic of the handler itself would. Nil (the default) names
	// the browser, its major version and the system, or the first product
	// of a user agent it does not know ("curl 8").
	DeviceName func(userAgent string) string

	// KeepUserAgent also stores the client's user agent (cut at 256
	// bytes, U+FFFD in place of bytes that are not UTF-8) in the record,
	// as "ua", so that Info.UserAgent gives it, for a devices page that
	// shows it. With a desktop browser's user agent
	// it costs about 160 bytes of Redis memory per session (see
	// docs/benchmarks.md). False (the default) stores only the device
	// name, and Info.UserAgent is empty but for sessions of version 1
	// records.
	KeepUserAgent bool

	// PreviousFormat makes this instance write what the previous release
	// reads: records of version 1 (times in RFC 3339, the user agent,
	// every value tagged) and 43-character tokens, whose session ids are
	// the whole SHA-256. It still reads everything this release does. Set
	// it for the first of the two deploys of an upgrade from that
	// release, while instances of both run, and drop it in the second
	// (README, "Upgrading"). False (the default) writes records of
	// version 2 and 42-character tokens.
	PreviousFormat bool

	// Logger receives session events and the store failures that no call
	// returns to the app, such as a read served as anonymous (at most once
	// per 10 seconds), a last-seen time not refreshed, an unreadable
	// record deleted or an scs session lost in migration. A failure that a
	// call returns (Create, Renew, Destroy, the Revoke methods, and
	// Commit, whose error middleware.Sessions answers with 503) is not
	// logged here: log it where it is handled, and call redisstore's
	// Store.Ping at start-up, which fails on a Redis whose configuration
	// (credentials, ACL, version) would refuse them. Tokens and Redis keys
	// are never logged; events carry a short fingerprint of the session
	// id. Nil means slog.Default().
	Logger *slog.Logger
}

// secretFields are the fields of Config that its String, GoString,
// Format, LogValue and MarshalJSON never print.
var secretFields = []string{"Keys", "TagKey", "RetiredKeys"}

// String returns cfg as %+v would print it, but with Keys and RetiredKeys
// as their number ("[2 keys]") and TagKey as "[redacted]" when set, so
// that a configuration may be logged: {Keys:[2 keys] Lifetime:24h0m0s
// ...}.
//
// A struct that embeds a Config gets String, GoString, Format, LogValue
// and MarshalJSON too (Go promotes them), and so prints, logs and
// marshals as the Config alone: in type App struct { session.Config;
// Port int }, Port never shows. Make the Config a named field (Session
// session.Config) to print both.
//
// fmt cannot call a method of a value that it reaches through an
// unexported field, and prints such a value's fields themselves: a Config
// in an unexported field of a struct (appConfig{cfg: c} printed with
// %+v, or logged by slog's text handler) shows its keys in full. Keep
// a Config in an exported field, or print or log it directly.
func (cfg Config) String() string { return redact.String(cfg, secretFields...) }

// GoString returns cfg as %#v would print it, its keys redacted as String
// does.
func (cfg Config) GoString() string { return redact.GoString(cfg, secretFields...) }

// Format implements fmt.Formatter: %#v prints GoString, every other verb
// String, so that no verb prints a key. A struct that embeds a Config
// prints as the Config alone, and a Config in an unexported field with
// its keys (see String).
func (cfg Config) Format(f fmt.State, verb rune) { redact.Format(f, verb, cfg) }

// LogValue implements slog.LogValuer: a group of one attribute per field,
// each as String prints it, keys redacted. A struct that embeds a Config
// logs as the Config alone (see String).
//
// Through a nil *Config, slog writes "LogValue panicked" and a
// stack in place of the value (nothing of any Config): Go calls a
// method of Config through a nil pointer by panicking, before LogValue
// runs, and slog recovers. fmt prints such a pointer as <nil>, and
// encoding/json as null.
func (cfg Config) LogValue() slog.Value { return redact.LogValue(cfg, secretFields...) }

// MarshalJSON implements json.Marshaler with the view LogValue gives: an
// object of one string per field, each as String prints it, keys
// redacted. slog's JSON handler marshals a Config inside a struct or a
// slice with encoding/json, which cannot marshal its func fields. A Config
// is not meant to go through JSON and back: what it marshals to has no
// key. A struct that embeds a Config marshals as the Config alone (see
// String).
func (cfg Config) MarshalJSON() ([]byte, error) { return redact.MarshalJSON(cfg, secretFields...) }

// withDefaults returns cfg with every zero field set to its default, or an
// error naming the first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Keys) == 0 {
		return cfg, errors.New("session: Config.Keys: at least one signing key is required (FromEnv reads them from SESSION_KEYS: set it)")
	}
	for i, k := range cfg.Keys {
		if err := keycheck.Check(k, MinKeyLength); err != nil {
			return cfg, fmt.Errorf("session: Config.Keys[%d]: %w", i, err)
		}
	}
	for i, k := range cfg.RetiredKeys {
		if err := keycheck.Check(k, MinKeyLength); err != nil {
			return cfg, fmt.Errorf("session: Config.RetiredKeys[%d]: %w", i, err)
		}
		if slices.ContainsFunc(cfg.Keys, func(key []byte) bool { return subtle.ConstantTimeCompare(key, k) == 1 }) {
			return cfg, fmt.Errorf("session: Config.RetiredKeys[%d] is in Keys too: a key in Keys still verifies; take it out of Keys to retire it", i)
		}
	}
	if cfg.TagKey != nil {
		if err := keycheck.Check(cfg.TagKey, MinKeyLength); err != nil {
			return cfg, fmt.Errorf("session: Config.TagKey: %w", err)
		}
		if cfg.signingKey(cfg.TagKey) {
			return cfg, errors.New("session: Config.TagKey is a signing key too: want a key of its own, since signing keys rotate and a TagKey never does")
		}
	}
	// The Manager keeps copies of the keys: a caller may wipe or reuse its
	// buffers once New has returned, which then signs and checks with the
	// keys it was given, not with zeros.
	cfg.Keys, cfg.RetiredKeys, cfg.TagKey = cloneKeys(cfg.Keys), cloneKeys(cfg.RetiredKeys), bytes.Clone(cfg.TagKey)
	switch {
	case cfg.Lifetime < 0:
		return cfg, errors.New("session: Config.Lifetime: must not be negative")
	case cfg.Lifetime == 0:
		cfg.Lifetime = DefaultLifetime
	case cfg.Lifetime < time.Millisecond || cfg.Lifetime > maxLifetime:
		// Shorter, a session would end in the millisecond it began (times
		// are whole milliseconds); longer, its deadline would not fit a
		// token or a record.
		return cfg, fmt.Errorf("session: Config.Lifetime: want 1ms to 100 years, got %v", cfg.Lifetime)
	}
	switch {
	case cfg.IdleTimeout == 0:
		cfg.IdleTimeout = DefaultIdleTimeout
	case cfg.IdleTimeout > 0 && cfg.IdleTimeout < time.Millisecond:
		// Redis keeps times to live in milliseconds; and a value so
		// short is a unit forgotten (30 meant as minutes), which would
		// end every session before its next request.
		return cfg, fmt.Errorf("session: Config.IdleTimeout: want 1ms or more, or a negative value for none, got %v", cfg.IdleTimeout)
	}
	if cfg.MaxSessionsPerUser < 0 {
		return cfg, errors.New("session: Config.MaxSessionsPerUser: must not be negative")
	}
	switch {
	case cfg.MaxRecordBytes == 0:
		cfg.MaxRecordBytes = DefaultMaxRecordBytes
	case cfg.MaxRecordBytes > maxRecordBytes:
		return cfg, fmt.Errorf("session: Config.MaxRecordBytes: want at most 512 MiB, the largest string Redis stores, got %d", cfg.MaxRecordBytes)
	}
	if cfg.LastSeenInterval == 0 {
		cfg.LastSeenInterval = DefaultLastSeenInterval
	}
	if cfg.CookieName == "" {
		cfg.CookieName = DefaultCookieName
		if cfg.InsecureCookie {
			cfg.CookieName = DefaultInsecureCookieName
		}
	}
	if !validCookieName(cfg.CookieName) {
		return cfg, fmt.Errorf("session: Config.CookieName: %q is not a valid cookie name", cfg.CookieName)
	}
	if cfg.InsecureCookie && (hasPrefixFold(cfg.CookieName, "__Host-") || hasPrefixFold(cfg.CookieName, "__Secure-")) {
		return cfg, fmt.Errorf("session: Config.CookieName: %q needs a Secure cookie, but InsecureCookie is set", cfg.CookieName)
	}
	switch cfg.SameSite {
	case 0:
		cfg.SameSite = http.SameSiteLaxMode
	case http.SameSiteLaxMode, http.SameSiteStrictMode:
	case http.SameSiteNoneMode:
		if cfg.InsecureCookie {
			return cfg, errors.New("session: Config.SameSite: SameSite=None needs a Secure cookie, but InsecureCookie is set")
		}
	case http.SameSiteDefaultMode:
		// net/http writes no attribute for it, and browsers differ on
		// what that means.
		return cfg, errors.New("session: Config.SameSite: http.SameSiteDefaultMode sends no SameSite attribute, which browsers read differently: leave it zero for Lax, or say Lax, Strict or None")
	default:
		return cfg, fmt.Errorf("session: Config.SameSite: unknown value %d", cfg.SameSite)
	}
	if cfg.FromSCS != nil {
		imp, err := cfg.FromSCS.withDefaults(cfg.Lifetime)
		if err != nil {
			return cfg, err
		}
		cfg.FromSCS = imp
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// validCookieName reports whether name is an RFC 6265 token.
func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// FromEnv reads a Config from the environment:
//
//	SESSION_KEYS          comma-separated signing keys, each the base64 (standard or URL alphabet,
//	                      padded or not) of at least 32 random bytes; the first signs
//	SESSION_RETIRED_KEYS  comma-separated keys taken out of SESSION_KEYS, in the same form (Config.RetiredKeys)
//	SESSION_LIFETIME      absolute timeout, a Go duration such as 24h, 1ms to 100 years
//	SESSION_IDLE_TIMEOUT  idle timeout, a Go duration such as 30m, at least 1ms; 0 disables it
//	SESSION_COOKIE_SECURE false drops the Secure attribute (plain-HTTP development only)
//	SESSION_MAX_PER_USER  most sessions one user may have at once; 0 means no limit
//	SESSION_TAG_KEY       the base64 of at least 32 random bytes (Config.TagKey), needed on a Redis Cluster
//	SESSION_KEEP_USER_AGENT  true stores the user agent in the record (Config.KeepUserAgent)
//	SESSION_PREVIOUS_FORMAT  true writes what the previous release reads (Config.PreviousFormat)
//
// Unset variables leave the field zero, which New turns into its default; an
// unset SESSION_KEYS leaves Keys empty, which New refuses. An empty variable
// counts as unset (as in redisstore.FromEnv: a compose file's VAR= line). A
// bad value gives an error that names the variable and what it expected,
// never the value of a key.
func FromEnv() (Config, error) {
	return fromEnv(os.LookupEnv)
}

// signingKey reports whether key is one of c's Keys or RetiredKeys,
// compared in constant time.
func (c Config) signingKey(key []byte) bool {
	same := func(k []byte) bool { return subtle.ConstantTimeCompare(k, key) == 1 }
	return slices.ContainsFunc(c.Keys, same) || slices.ContainsFunc(c.RetiredKeys, same)
}

func fromEnv(lookupEnv func(string) (string, bool)) (Config, error) {
	lookup := func(name string) (string, bool) {
		v, ok := lookupEnv(name)
		return v, ok && v != ""
	}
	var cfg Config
	if v, ok := lookup("SESSION_KEYS"); ok {
		keys, err := ParseKeys(v)
		if err != nil {
			return cfg, fmt.Errorf("session: SESSION_KEYS: %w", err)
		}
		cfg.Keys = keys
	}
	if v, ok := lookup("SESSION_RETIRED_KEYS"); ok {
		keys, err := ParseKeys(v)
		if err != nil {
			return cfg, fmt.Errorf("session: SESSION_RETIRED_KEYS: %w", err)
		}
		for i, k := range keys {
			if slices.ContainsFunc(cfg.Keys, func(s []byte) bool { return subtle.ConstantTimeCompare(s, k) == 1 }) {
				return cfg, fmt.Errorf("session: SESSION_RETIRED_KEYS: key %d is in SESSION_KEYS too, where it still verifies: take it out of SESSION_KEYS to retire it", i+1)
			}
		}
		cfg.RetiredKeys = keys
	}
	if v, ok := lookup("SESSION_LIFETIME"); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond || d > maxLifetime {
			return cfg, fmt.Errorf("session: SESSION_LIFETIME: want a duration of 1ms to 100 years such as 24h, got %q", v)
		}
		cfg.Lifetime = d
	}
	if v, ok := lookup("SESSION_IDLE_TIMEOUT"); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 0 && d < time.Millisecond {
			return cfg, fmt.Errorf("session: SESSION_IDLE_TIMEOUT: want a duration such as 30m (at least 1ms), or 0 to disable, got %q", v)
		}
		if d == 0 {
			d = -1 // Config's spelling of "disabled"
		}
		cfg.IdleTimeout = d
	}
	if v, ok := lookup("SESSION_COOKIE_SECURE"); ok {
		secure, err := strconv.ParseBool(v)
		if err != nil {
			return cfg, fmt.Errorf("session: SESSION_COOKIE_SECURE: want true or false, got %q", v)
		}
		cfg.InsecureCookie = !secure
	}
	if v, ok := lookup("SESSION_TAG_KEY"); ok {
		keys, err := ParseKeys(v)
		if err != nil || len(keys) != 1 {
			return cfg, errors.New("session: SESSION_TAG_KEY: want one key, the base64 of at least 32 random bytes")
		}
		if cfg.signingKey(keys[0]) { // as New refuses it, but naming the variables
			return cfg, errors.New("session: SESSION_TAG_KEY: is also in SESSION_KEYS or SESSION_RETIRED_KEYS: want a key of its own, since signing keys rotate and a tag key never does")
		}
		cfg.TagKey = keys[0]
	}
	if v, ok := lookup("SESSION_MAX_PER_USER"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return cfg, fmt.Errorf("session: SESSION_MAX_PER_USER: want a whole number, 0 for no limit, got %q", v)
		}
		cfg.MaxSessionsPerUser = n
	}
	for _, b := range []struct {
		name string
		p    *bool
	}{
		{"SESSION_KEEP_USER_AGENT", &cfg.KeepUserAgent},
		{"SESSION_PREVIOUS_FORMAT", &cfg.PreviousFormat},
	} {
		if v, ok := lookup(b.name); ok {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return cfg, fmt.Errorf("session: %s: want true or false, got %q", b.name, v)
			}
			*b.p = on
		}
	}
	return cfg, nil
}

// ParseKeys decodes a comma-separated list of base64 signing keys (standard
// or URL alphabet, padded or not, on one line each), each at least
// MinKeyLength bytes once decoded, and random bytes as far as one can tell
// (see Config.Keys), in text that repeats no run of 10 characters (a
// placeholder typed in place of a key). White space around a key is
// ignored; inside one, as in a key wrapped over two lines, it is an
// error, and so are quotes around one. Errors say which key is
// wrong by position, never its value.
func ParseKeys(s string) ([][]byte, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no key")
	}
	var keys [][]byte
	for i, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			return nil, fmt.Errorf("key %d: empty (a comma too many?)", i+1)
		}
		// Go's base64 decoders skip line breaks: two keys on two lines
		// would decode as one longer key, and a rotation written so would
		// verify neither. Nor can a line break tell them from one key
		// that a tool wrapped (openssl rand -base64 64 writes two lines
		// of 64 and 24 characters; two keys of openssl rand -base64 48
		// are two lines of 64): refuse both, and say how to write each.
		if strings.ContainsAny(field, " \t\r\n") {
			return nil, fmt.Errorf("key %d: contains a line break or a space: join the lines of a key that was wrapped (openssl rand -base64 wraps keys longer than 48 bytes), and separate keys with commas", i+1)
		}
		if strings.ContainsAny(field[:1]+field[len(field)-1:], `"'`) {
			return nil, fmt.Errorf("key %d: in quotes: remove them (a .env file's quotes can reach the environment as they are)", i+1)
		}
		k, err := decodeBase64(field)
		if err != nil {
			return nil, fmt.Errorf("key %d: not base64", i+1)
		}
		if len(k) < MinKeyLength {
			// Someone who pasted a passphrase learns that it is read as
			// base64, not as text.
			return nil, fmt.Errorf("key %d: want at least %d bytes, got %d once decoded from base64 (make a key with openssl rand -base64 32)", i+1, MinKeyLength, len(k))
		}
		if err := keycheck.Check(k, MinKeyLength); err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		if err := keycheck.CheckText(field); err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// cloneKeys returns a deep copy of keys.
func cloneKeys(keys [][]byte) [][]byte {
	if keys == nil {
		return nil
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// hasPrefixFold reports whether name begins with prefix, in any case:
// browsers match the __Host- and __Secure- cookie prefixes
// case-insensitively (RFC 6265bis), and drop a "__host-" cookie without
// Secure as they drop a "__Host-" one.
func hasPrefixFold(name, prefix string) bool {
	return len(name) >= len(prefix) && strings.EqualFold(name[:len(prefix)], prefix)
}
