package middleware

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode"
)

// TestWaitText checks the words of the HTML 429 page's "try again in".
func TestWaitText(t *testing.T) {
	for _, tc := range []struct {
		s    int64
		want string
	}{
		{1, "1 second"}, {59, "59 seconds"}, {119, "119 seconds"}, {120, "2 minutes"},
		{121, "3 minutes"}, {7199, "120 minutes"}, {7200, "2 hours"}, {7201, "3 hours"},
	} {
		if got := waitText(tc.s); got != tc.want {
			t.Errorf("waitText(%d) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

// TestJSONFieldSplit checks that a body whose fields matching the name
// differ is told apart, whichever of them a handler reads, and one whose
// matches agree is not.
func TestJSONFieldSplit(t *testing.T) {
	for _, tc := range []struct {
		body  string
		split bool
	}{
		{`{"username":"alice"}`, false},
		{`{"username":"alice","Username":"ALICE "}`, false}, // the same name after folding
		{`{"username":"alice","username":null}`, false},
		{`{"username":"alice","Username":"decoy"}`, true},
		{`{"Username":"decoy","username":"alice"}`, true},
		{`{"username":"alice","username":"bob"}`, true}, // a first-match parser reads alice
	} {
		if _, split := jsonField([]byte(tc.body), "username"); split != tc.split {
			t.Errorf("jsonField(%s): split %v, want %v", tc.body, split, tc.split)
		}
	}
}

// TestClientNet checks what ByIP counts by for the forms RemoteAddr takes.
func TestClientNet(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1:80", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"[2001:db8:a:b:c:d:e:f]:80", "2001:db8:a:b::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		// No IP address: one counter for all such requests, neither
		// uncounted (empty) nor each under its own made-up text.
		{"@", noAddress}, // a Unix socket's peer
		{"", noAddress},
		{"[2001:db8::1]", noAddress}, // brackets without a port
		{"evil-1:80", noAddress},
		{"evil-2", noAddress},
	} {
		if got := clientNet(tc.in); got != tc.want {
			t.Errorf("clientNet(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzJSONField checks that ByJSONField reads the user name the handler
// would decode from the same body with encoding/json: whenever
// json.Unmarshal accepts the body into a struct with that field, a string
// as handlers declare it, jsonField returns the same value, so no body can
// be counted under one name and logged in under another. (A *string field
// reads a null as nil, where a string keeps the value before it: such a
// handler sees no user name and refuses the login, whatever was counted.)
// That holds too when Unmarshal fills the struct and returns an
// UnmarshalTypeError, for a value of another type: a handler that ignores
// the error logs the name in.
func FuzzJSONField(f *testing.F) {
	for _, s := range []string{
		`{"username":"alice"}`, `{"USERNAME":"a","username":"b"}`, `{"username":"b","USERNAME":"a"}`,
		`{"username":null}`, `{"username":"alice","password":"x","username":null}`, `{"user":"x","password":"y"}`, `{"username":"\u0041lice"}`,
		`{"ſusername":"x"}`, `{"username":"a"} trailing`, `[]`, `{"username":{"a":1}}`, `{"username":"a","x":[1,{"y":2}]}`,
		`{"username":"alice","username":1}`, `{"username":"alice","Username":{}}`, `{"username":true,"username":"alice"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var c struct {
			Username string `json:"username"`
		}
		var typeErr *json.UnmarshalTypeError
		if err := json.Unmarshal(body, &c); err != nil && !errors.As(err, &typeErr) {
			return
		}
		want := c.Username
		if got, _ := jsonField(body, "username"); got != want {
			t.Errorf("jsonField(%q) = %q, encoding/json decodes %q", body, got, want)
		}
	})
}

// TestFoldRuneKeepsKeys checks that folding names as upper-casing makes
// them equal (the dotless i as i) changes the fold of no other rune, so
// that no other name's counter moves to a new key on the upgrade, its
// lockout lifted; and that every rune folds as its upper and lower cases
// do.
func TestFoldRuneKeepsKeys(t *testing.T) {
	before := func(r rune) rune { // the fold of the release before
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return unicode.ToLower(least)
	}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		f := foldRune(r)
		if r != 'ı' && f != before(r) {
			t.Errorf("foldRune(%U) = %U, the release before folded it to %U", r, f, before(r))
		}
		if f != foldRune(unicode.ToUpper(r)) || f != foldRune(unicode.ToLower(r)) {
			t.Errorf("foldRune(%U) = %U, its upper case folds to %U, its lower case to %U", r, f, foldRune(unicode.ToUpper(r)), foldRune(unicode.ToLower(r)))
		}
	}
	if foldRune('ı') != 'i' {
		t.Errorf("foldRune('ı') = %U, want i", foldRune('ı'))
	}
}
