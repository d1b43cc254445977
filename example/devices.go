package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/mileusna/useragent"

	"github.com/sessionkit/sessionkit/session"
)

// device is a session as the devices page shows it: named as a person
// would name it, its times ready for <time> elements.
type device struct {
	ID      string // session.Info.FirstID, which a renewal keeps: the revoke form's action
	Name    string // "Firefox on Windows", "Safari on iPhone", "curl": session.Info.Device
	Kind    string // "desktop", "phone", "tablet" or "other": the icon, from the user agent
	Current bool
	Active  bool // seen within activeNow
	// ActiveUntil is when another device's "Active now" stops being true
	// if it is not seen again, for the page's script, which then shows its
	// last-seen time instead, as a reload would: a page left open does not
	// go on calling a device active. "" for this device, or one not active.
	ActiveUntil string
	IP          string
	Agent       string // the raw user agent, for the details line: session.Info.UserAgent
	LastSeen    stamp
	Created     stamp
	Ends        stamp  // the absolute deadline
	Idle        string // the idle timeout in words ("30 minutes"), "" for none

	seen time.Time // LastSeen's time, to sort by
}

// stamp is a time for a <time datetime> element: the machine-readable
// value, and the text shown until the page's script rewrites it in the
// browser's time zone (Rel relative to now, Abs an exact time in UTC).
type stamp struct {
	ISO string
	Rel string
	Abs string
}

// newStamp describes t as seen at now.
func newStamp(t, now time.Time) stamp {
	return stamp{ISO: t.UTC().Format(time.RFC3339), Rel: ago(now.Sub(t)), Abs: t.UTC().Format("Mon 2 Jan 2006, 15:04 MST")}
}

// ago says how long ago something happened d before now, as the page's
// script says it too (assets/app.js): "just now" within a minute, then in
// minutes, hours and days.
func ago(d time.Duration) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return plural(int(d/time.Hour), "hour")
	default:
		return plural(int(d/(24*time.Hour)), "day")
	}
}

// activeNow is how recent a last-seen time counts as "active now". A
// session's last-seen time may be a minute stale
// (session.DefaultLastSeenInterval), so a minute would call a session in
// use idle.
const activeNow = 2 * time.Minute

// deviceName names a user agent as a person would: the browser and the
// device or system it runs on ("Safari on iPhone", "Chrome on Android",
// "Firefox on Windows"), the program alone for tools ("curl"), and
// "Unknown device" when the user agent says nothing usable. kind is the
// icon to show: "phone", "tablet", "desktop" or "other".
func deviceName(ua string) (name, kind string) {
	p := useragent.Parse(ua)
	switch {
	case p.Mobile:
		kind = "phone"
	case p.Tablet:
		kind = "tablet"
	case p.Desktop:
		kind = "desktop"
	default:
		kind = "other"
	}
	browser := strings.TrimSpace(p.Name)
	if !strings.ContainsFunc(browser, unicode.IsLetter) {
		return unknownDevice, "other"
	}
	on := p.OS
	if p.Device == "iPhone" || p.Device == "iPad" {
		on = p.Device
	}
	if on == "" {
		return browser, kind
	}
	return browser + " on " + on, kind
}

// nameDevice is deviceName's name alone: the example's
// session.Config.DeviceName, which names each session once, at login.
func nameDevice(ua string) string {
	name, _ := deviceName(ua)
	return name
}

// unknownDevice names a session without a name (one that an instance
// without nameDevice created): the name deviceName gives an empty user
// agent.
const unknownDevice = "Unknown device"

// devices turns a user's sessions into the devices page's list, each
// named by its Info.Device and drawn from its user agent (a generic
// icon without one): the current device first, then the others by last
// activity, most recent first. idle is the sessions' idle timeout,
// negative for none.
func devices(list []session.Info, now time.Time, idle time.Duration) []device {
	idleText := ""
	if idle > 0 {
		idleText = inWords(idle)
	}
	out := make([]device, 0, len(list))
	for _, info := range list {
		name, kind := info.Device, "other"
		if name == "" {
			name = unknownDevice
		}
		if info.UserAgent != "" {
			_, kind = deviceName(info.UserAgent)
		}
		out = append(out, device{
			ID: info.FirstID, Name: name, Kind: kind, Current: info.Current,
			Active: info.Current || now.Sub(info.LastSeen) < activeNow,
			IP:     info.IP, Agent: info.UserAgent, seen: info.LastSeen, Idle: idleText,
			LastSeen: newStamp(info.LastSeen, now), Created: newStamp(info.CreatedAt, now), Ends: newStamp(info.ExpiresAt, now),
		})
	}
	for i, d := range out {
		if d.Active && !d.Current {
			out[i].ActiveUntil = d.seen.Add(activeNow).UTC().Format(time.RFC3339)
		}
	}
	slices.SortStableFunc(out, func(a, b device) int {
		if a.Current != b.Current {
			if a.Current {
				return -1
			}
			return 1
		}
		return b.seen.Compare(a.seen)
	})
	return out
}

// inWords writes a duration as a person would: "30 minutes", "1 hour",
// "90 seconds"; Go's notation ("1h30m0s") for what has no single unit.
func inWords(d time.Duration) string {
	unit := func(n time.Duration, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d%(24*time.Hour) == 0:
		return unit(d/(24*time.Hour), "day")
	case d%time.Hour == 0:
		return unit(d/time.Hour, "hour")
	case d%time.Minute == 0:
		return unit(d/time.Minute, "minute")
	case d%time.Second == 0:
		return unit(d/time.Second, "second")
	}
	return d.String()
}
