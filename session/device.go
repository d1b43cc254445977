package session

import (
	"strings"
	"unicode/utf8"
)

// maxDevice bounds a device description.
const maxDevice = 64

// browsers maps the product token of a user agent to the browser it names,
// most specific first: Edge and Opera also send "Chrome/", Chrome also
// sends "Safari/", and iOS browsers send their own token beside "Safari/".
var browsers = []struct{ token, name string }{
	{"Edg/", "Edge"},
	{"EdgA/", "Edge"},
	{"EdgiOS/", "Edge"},
	{"OPR/", "Opera"},
	{"SamsungBrowser/", "Samsung Internet"},
	{"Firefox/", "Firefox"},
	{"FxiOS/", "Firefox"},
	{"CriOS/", "Chrome"},
	{"Chrome/", "Chrome"},
	{"Version/", "Safari"}, // Safari's own version; "Safari/" is WebKit's build
}

// systems maps a fragment of a user agent to the operating system it names,
// most specific first: Android and ChromeOS also say "Linux", iOS says
// "like Mac OS X".
var systems = []struct{ fragment, name string }{
	{"Windows", "Windows"},
	{"Android", "Android"},
	{"iPhone", "iOS"},
	{"iPad", "iPadOS"},
	{"CrOS", "ChromeOS"},
	{"Mac OS X", "macOS"},
	{"Macintosh", "macOS"},
	{"Linux", "Linux"},
}

// describeDevice returns a short description of the client a user agent
// names, for a user's list of devices: "Chrome 131 on Windows", "Safari 17
// on iOS", "Firefox 128 on Linux". A user agent it does not know gives its
// first product and major version ("curl 8", "okhttp 4"); an empty or
// blank one gives "". The description is at most maxDevice bytes of valid UTF-8.
func describeDevice(ua string) string {
	browser := ""
	for _, b := range browsers {
		if v, ok := productVersion(ua, b.token); ok {
			browser = joinVersion(b.name, v)
			break
		}
	}
	system := ""
	for _, s := range systems {
		if strings.Contains(ua, s.fragment) {
			system = s.name
			break
		}
	}
	switch {
	case browser != "" && system != "":
		browser += " on " + system
	case browser == "" && system != "":
		browser = system
	default:
		first, _, _ := strings.Cut(strings.TrimSpace(ua), " ")
		name, v, _ := strings.Cut(first, "/")
		if name = strings.ToValidUTF8(name, ""); name == "" {
			return ""
		}
		browser = joinVersion(name, v)
	}
	if len(browser) > maxDevice {
		browser = browser[:maxDevice]
	}
	return strings.ToValidUTF8(browser, "")
}

// productVersion returns the major version that follows token in ua, such
// as "131" for token "Chrome/" in "... Chrome/131.0.0.0 ...".
func productVersion(ua, token string) (string, bool) {
	i := strings.Index(ua, token)
	if i < 0 || (i > 0 && ua[i-1] != ' ' && ua[i-1] != '(') {
		return "", false
	}
	v := ua[i+len(token):]
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(v)
	}
	return v[:end], true
}

// joinVersion returns name followed by the major version v, if any.
func joinVersion(name, v string) string {
	if v == "" || !utf8.ValidString(v) {
		return name
	}
	if i := strings.IndexByte(v, '.'); i >= 0 {
		v = v[:i]
	}
	return name + " " + v
}
