// Package nocache keeps a response that sets or expires a session cookie
// out of shared caches: session sets the cookie, and middleware answers
// for it when a handler's answer comes after the session's commit or
// when a 503 replaces it.
package nocache

import (
	"net/http"
	"slices"
)

// cacheControl is the Cache-Control directive of a response that sets or
// expires a session cookie. private keeps it out of shared caches: a
// request without a cookie does not vary from another by its Cookie
// header, so Vary alone would let a cache serve one visitor's new session
// (values the response shows, a page made for it) to the next. no-cache
// on Set-Cookie keeps a cache that stores it anyway (the browser's own)
// from replaying the cookie.
const cacheControl = `private, no-cache="Set-Cookie"`

// cdnHeaders are the headers by which a proxy or a CDN caches a response
// whatever its Cache-Control says (RFC 9213's CDN-Cache-Control and
// Cloudflare's, Vercel's and Netlify's own, which take precedence over it,
// Fastly's and Varnish's Surrogate-Control, Akamai's Edge-Control, nginx's
// X-Accel-Expires). The keys are canonical.
var cdnHeaders = [...]string{
	"Cdn-Cache-Control", "Cloudflare-Cdn-Cache-Control", "Vercel-Cdn-Cache-Control", "Netlify-Cdn-Cache-Control",
	"Surrogate-Control", "Edge-Control", "X-Accel-Expires",
}

// CDNHeader reports whether the header key k, canonical, is one by which
// a proxy or a CDN caches a response whatever its Cache-Control says.
func CDNHeader(k string) bool {
	return slices.Contains(cdnHeaders[:], k)
}

// KeepOut adds cacheControl to h's Cache-Control, unless it is the last
// value already, and deletes the headers CDNHeader names, also where a
// handler set them under a key that is not canonical
// (h["CDN-Cache-Control"]), which net/http writes as it is.
func KeepOut(h http.Header) {
	for k := range h {
		if CDNHeader(http.CanonicalHeaderKey(k)) {
			delete(h, k)
		}
	}
	cc := h["Cache-Control"]
	if len(cc) > 0 && cc[len(cc)-1] == cacheControl {
		return // a second cookie of the same response, or the handler's own
	}
	// The key is canonical: no need for Header.Add to make it so.
	h["Cache-Control"] = append(cc, cacheControl)
}
