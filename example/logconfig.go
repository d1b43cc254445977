package main

import (
	"cmp"
	"log/slog"
	"strings"

	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// configAttrs describes the configuration the example runs with, for the
// one start-up log line: the listen address, whether Redis is the embedded
// one, and the settings of rcfg, scfg and login with the defaults of
// redisstore.Open, session.New and the login limits in place of zero
// fields, so that the line shows what is in force rather than what was
// left unset. Of the near-cache it shows MaxEntries, and its other
// settings only when it is on. A username (Redis or Sentinel) is the user
// the connections authenticate as, with or without a password; "" is the
// default user.
//
// Secrets never appear: of the Redis and Sentinel passwords only whether
// they are set, of the signing keys only how many there are, of the tag
// key and the rate limit key only whether they are set.
func configAttrs(listen string, embedded bool, rcfg redisstore.Config, scfg session.Config, login loginConfig) []slog.Attr {
	attrs := []slog.Attr{slog.String("listen", listen)}
	switch {
	case len(rcfg.ClusterNodes) > 0:
		attrs = append(attrs,
			slog.String("mode", "cluster"),
			slog.String("nodes", strings.Join(rcfg.ClusterNodes, ",")))
	case len(rcfg.SentinelAddrs) > 0:
		attrs = append(attrs,
			slog.String("mode", "sentinel"),
			slog.String("sentinels", strings.Join(rcfg.SentinelAddrs, ",")),
			slog.String("sentinel_master", rcfg.SentinelMaster),
			slog.String("sentinel_username", rcfg.SentinelUsername),
			slog.Bool("sentinel_password_set", rcfg.SentinelPassword != ""))
	default:
		attrs = append(attrs,
			slog.String("mode", "single"),
			slog.String("addr", cmp.Or(rcfg.Addr, redisstore.DefaultAddr)),
			slog.Bool("embedded", embedded))
	}
	maxActive := cmp.Or(rcfg.MaxActive, redisstore.DefaultMaxActive)
	attrs = append(attrs,
		slog.Bool("tls", rcfg.TLS != nil),
		slog.String("username", rcfg.Username),
		slog.Bool("password_set", rcfg.Password != ""),
		slog.Int("db", rcfg.DB),
		slog.Int("pool_max_active", maxActive),
		slog.Int("pool_max_idle", cmp.Or(rcfg.MaxIdle, maxActive)),
		slog.String("pool_idle_timeout", cmp.Or(rcfg.IdleTimeout, redisstore.DefaultIdleTimeout).String()),
		slog.String("dial_timeout", cmp.Or(rcfg.DialTimeout, redisstore.DefaultDialTimeout).String()),
		slog.String("read_timeout", cmp.Or(rcfg.ReadTimeout, redisstore.DefaultReadTimeout).String()),
		slog.String("write_timeout", cmp.Or(rcfg.WriteTimeout, redisstore.DefaultWriteTimeout).String()),
		slog.String("store_timeout", cmp.Or(rcfg.Timeout, redisstore.DefaultTimeout).String()),
		slog.String("key_prefix", rcfg.KeyPrefix),
		slog.Int("wait_replicas", rcfg.WaitReplicas),
		slog.Int("near_cache_max_entries", rcfg.NearCache.MaxEntries), // 0: off
	)
	if rcfg.NearCache.MaxEntries > 0 {
		attrs = append(attrs,
			slog.String("near_cache_staleness", cmp.Or(rcfg.NearCache.Staleness, redisstore.DefaultNearCacheStaleness).String()),
			slog.Bool("near_cache_strict", rcfg.NearCache.Strict),
			slog.String("near_cache_extend_every", cmp.Or(rcfg.NearCache.ExtendEvery, redisstore.DefaultNearCacheExtendEvery).String()),
		)
	}

	idle := "off" // a negative IdleTimeout disables it
	if scfg.IdleTimeout >= 0 {
		idle = cmp.Or(scfg.IdleTimeout, session.DefaultIdleTimeout).String()
	}
	cookie := session.DefaultCookieName
	if scfg.InsecureCookie {
		cookie = session.DefaultInsecureCookieName
	}
	perUser, perIP := login.limits()
	return append(attrs,
		slog.String("session_lifetime", cmp.Or(scfg.Lifetime, session.DefaultLifetime).String()),
		slog.String("session_idle_timeout", idle),
		slog.String("cookie_name", cmp.Or(scfg.CookieName, cookie)),
		slog.Bool("cookie_secure", !scfg.InsecureCookie),
		slog.Int("max_sessions_per_user", scfg.MaxSessionsPerUser), // 0: no limit
		slog.Bool("previous_format", scfg.PreviousFormat),
		slog.Bool("tag_key_set", scfg.TagKey != nil),
		slog.Int("signing_keys", len(scfg.Keys)),
		slog.Int("retired_keys", len(scfg.RetiredKeys)),
		slog.Bool("rate_limit_key_set", login.keySet),
		slog.Int("login_limit_per_user", perUser),
		slog.Int("login_limit_per_ip", perIP),
		slog.String("reauth_after", login.reauthAfter().String()),
	)
}
