package main

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
)

// users are the demo accounts, alice / wonderland and bob / builder, kept as
// PBKDF2-SHA256 hashes with OWASP's iteration count: the passwords themselves
// are not in the program.
var users = map[string]string{
	"alice": "pbkdf2-sha256$600000$WDtCo3PvLnqzO02XbkgO0g$VDYy6+n32dpVtWg4u9etHUPZfSXGwgCdOpRQykuaiD8",
	"bob":   "pbkdf2-sha256$600000$U54aijrxPNXKOMDC33pmrg$dS/mGt2Sh0UhQuCy9k1tAZ3/qAqxRw58tRr2FDO+ibg",
}

// unknownUser is hashed against when the user name is unknown, so that a
// wrong name takes as long as a wrong password. (A variable, like users,
// only so that the tests can hash with fewer iterations: see TestMain.)
var unknownUser = "pbkdf2-sha256$600000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// authenticate reports whether password is the password of username.
func authenticate(username, password string) bool {
	encoded, known := users[username]
	if !known {
		encoded = unknownUser
	}
	return checkPassword(encoded, password) && known
}

// checkPassword compares password with an encoded
// "pbkdf2-sha256$<iterations>$<salt>$<hash>" in constant time.
func checkPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err1 := strconv.Atoi(parts[1])
	salt, err2 := base64.RawStdEncoding.DecodeString(parts[2])
	want, err3 := base64.RawStdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}
