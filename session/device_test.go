package session

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDescribeDevice(t *testing.T) {
	tests := []struct{ ua, want string }{
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome 131 on Windows"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86", "Edge 131 on Windows"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15", "Safari 17 on macOS"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", "Safari 17 on iOS"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", "Chrome 131 on iOS"},
		{"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome 131 on Android"},
		{"Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", "Samsung Internet 26 on Android"},
		{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 on Linux"},
		{"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome 131 on ChromeOS"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/116.0.0.0", "Opera 116 on Windows"},
		{"curl/8.5.0", "curl 8"},
		{"okhttp/4.12.0", "okhttp 4"},
		{"Go-http-client/1.1", "Go-http-client 1"},
		{"Mozilla/5.0 (Windows NT 10.0)", "Windows"},
		{"test", "test"},
		{"", ""},
		{"   ", ""},
		{"NotChrome/1.0", "NotChrome 1"}, // "Chrome/" inside another product is not Chrome
		{strings.Repeat("x", 300), strings.Repeat("x", maxDevice)},
		{"\xff\xfe/1", ""},
	}
	for _, tc := range tests {
		if got := describeDevice(tc.ua); got != tc.want {
			t.Errorf("describeDevice(%q) = %q, want %q", tc.ua, got, tc.want)
		}
	}
}

func FuzzDescribeDevice(f *testing.F) {
	f.Add("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
	f.Add("curl/8.5.0")
	f.Fuzz(func(t *testing.T, ua string) {
		d := describeDevice(ua)
		if len(d) > maxDevice || !utf8.ValidString(d) {
			t.Errorf("describeDevice(%q) = %q: want at most %d bytes of valid UTF-8", ua, d, maxDevice)
		}
	})
}
