package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York without a system zoneinfo
)

// TestPutRefuses checks that Put refuses, with ErrInvalidValue, every value
// the record could not give back unchanged, and that the refusal leaves
// the session as it was: nothing written, the response still committed.
func TestPutRefuses(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	cookie, id := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "keep", "kept"); err != nil {
			t.Fatal(err)
		}
	})
	tests := []struct {
		name string
		v    any
	}{
		{"NaN", math.NaN()},
		{"+Inf", math.Inf(1)},
		{"-Inf", math.Inf(-1)},
		{"invalid UTF-8", "a\xff"},
		{"truncated rune", "caf\xc3"},
		{"year 10000", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"year -1", time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"struct with NaN float32", struct{ F float32 }{float32(math.NaN())}},
		{"struct with invalid UTF-8", struct{ S string }{"a\xff"}},
		{"struct with backslash then invalid UTF-8", struct{ S string }{`\` + "\xff"}},
		{"map key with invalid UTF-8", map[string]int{"a\xff": 1}},
		{"raw JSON with half a surrogate pair", json.RawMessage(`["\ud800"]`)},
		{"raw JSON with a low surrogate alone", json.RawMessage(`{"k":"\udc00x"}`)},
		{"slice with a time past 9999", []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		// JSON keeps no field of these: they would come back empty.
		{"error", errors.New("card declined")},
		{"wrapped error", fmt.Errorf("checkout: %w", errors.New("card declined"))},
		{"struct of unexported fields", struct{ n int }{1}},
		{`struct of fields tagged json:"-"`, struct {
			Secret string `json:"-"`
		}{"s3cret"}},
		{`struct of unexported and json:"-" fields`, &struct {
			n      int
			Secret string `json:"-"`
		}{0, "s3cret"}},
		// Nor inside another value, where they would be saved as {}.
		{"errors by field, as a form's", map[string]error{"email": errors.New("email is required"), "name": nil}},
		{"slice of errors", []error{errors.New("card declined")}},
		{"field of type error", struct{ Err error }{errors.New("card declined")}},
		{"error in an []any", []any{"ok", errors.New("card declined")}},
		{"struct of unexported fields in a map", map[string]any{"k": struct{ n int }{1}}},
		// Embedded, as encoding/json takes them.
		{"embedded exported interface holding an error", struct {
			Name string
			Failure
		}{"n", errors.New("card declined")}},
		{"embedded unexported struct with a field of type error", struct {
			Name string
			failed
		}{"n", failed{errors.New("card declined")}}},
		{"embedded error, which JSON ignores", struct{ error }{errors.New("card declined")}},
		{"map value that encodes itself only through its pointer", map[string]ptrText{"k": {n: 1}}},
		// Values that JSON keeps nothing of, or would write moved.
		{"embedded struct named by its tag, which JSON keeps nothing of", struct {
			Opaque `json:"s"`
			Name   string
		}{Opaque{1}, "n"}},
		{"embedded time with an offset of seconds", stamp{time.Date(1850, 1, 1, 12, 0, 0, 0, time.FixedZone("LMT", 3600+23))}},
		{"map key: a time with an offset of seconds", map[time.Time]int{time.Date(1850, 1, 1, 12, 0, 0, 0, time.FixedZone("LMT", 3600+23)): 1}},
		{"type embedding itself, which JSON keeps nothing of", selfEmbed{selfEmbed: &selfEmbed{}, secret: "x"}},
		// Other languages' readers take these otherwise (JavaScript
		// reads Infinity, Python refuses an integer of over 4,300
		// digits).
		{"json.Number past float64", json.Number("1e400")},
		{"big.Int past float64", new(big.Int).Exp(big.NewInt(10), big.NewInt(400), nil)},
		{"integer of 20,001 digits in a struct", struct{ N json.Number }{json.Number("1" + strings.Repeat("0", 20000))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := r.Do(t, "GET", "session:"+id).([]byte)
			h, err := exchange(t, m, cookie, func(ctx context.Context) {
				if err := Put(ctx, "bad", tc.v); !errors.Is(err, ErrInvalidValue) {
					t.Errorf("Put(%#v) = %v, want ErrInvalidValue", tc.v, err)
				}
				if v, ok := Get[any](ctx, "bad"); ok {
					t.Errorf("Get(bad) after a refused Put = %#v, want nothing", v)
				}
			})
			if err != nil {
				t.Errorf("Commit after Put(%#v) = %v, want nil", tc.v, err)
			}
			if c, ok := sessionCookie(m, h); ok {
				t.Errorf("Put(%#v) set cookie %v, want none", tc.v, c)
			}
			if after, _ := r.Do(t, "GET", "session:"+id).([]byte); len(before) == 0 || !bytes.Equal(after, before) {
				t.Errorf("record after Put(%#v) =\n%s\nwant unchanged\n%s", tc.v, after, before)
			}
			serve(t, m, cookie, func(ctx context.Context) {
				if u, _ := UserID(ctx); u != "alice" {
					t.Errorf("UserID after Put(%#v) = %q, want alice", tc.v, u)
				}
				if v, ok := Get[any](ctx, "bad"); ok {
					t.Errorf("Get(bad) in the next request = %#v, want nothing", v)
				}
				if v, _ := Get[string](ctx, "keep"); v != "kept" {
					t.Errorf("Get(keep) in the next request = %q, want kept", v)
				}
			})
		})
	}

	t.Run("beside a valid change", func(t *testing.T) {
		_, err := exchange(t, m, cookie, func(ctx context.Context) {
			if err := Put(ctx, "good", 1); err != nil {
				t.Fatal(err)
			}
			if err := Put(ctx, "bad", math.NaN()); !errors.Is(err, ErrInvalidValue) {
				t.Errorf("Put(NaN) = %v, want ErrInvalidValue", err)
			}
		})
		if err != nil {
			t.Errorf("Commit = %v, want nil", err)
		}
		serve(t, m, cookie, func(ctx context.Context) {
			if v, _ := Get[int](ctx, "good"); v != 1 {
				t.Errorf("Get(good) = %d, want 1", v)
			}
			if v, ok := Get[any](ctx, "bad"); ok {
				t.Errorf("Get(bad) = %#v, want nothing", v)
			}
		})
	})

	t.Run("anonymous", func(t *testing.T) {
		size := r.Do(t, "DBSIZE")
		h, err := exchange(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "bad", math.Inf(1)); !errors.Is(err, ErrInvalidValue) {
				t.Errorf("Put(+Inf) = %v, want ErrInvalidValue", err)
			}
		})
		if c, ok := sessionCookie(m, h); ok || err != nil {
			t.Errorf("anonymous Put(+Inf): Set-Cookie %v, Commit %v; want none, nil", c, err)
		}
		if got := r.Do(t, "DBSIZE"); got != size {
			t.Errorf("DBSIZE after an anonymous refused Put = %v, want %v", got, size)
		}
	})
}

// nestedArrays returns a value whose JSON is depth arrays, each inside the
// one before: [[...[true]...]]. None is empty, which gob would decode as a
// nil slice, null in JSON.
func nestedArrays(depth int) any {
	v := []any{true}
	for range depth - 1 {
		v = []any{v}
	}
	return v
}

// nestedObjects returns a value whose JSON is depth objects, each the
// member "a" of the one before, with brackets and braces in a string at
// the bottom, which do not nest: {"a":{"a":...{"s":"]}[{"}...}}.
func nestedObjects(depth int) any {
	v := map[string]any{"s": `]}"[{`}
	for range depth - 1 {
		v = map[string]any{"a": v}
	}
	return v
}

// encodingJSONDepth is the deepest nesting of arrays and objects that
// encoding/json reads and writes (maxNestingDepth in
// encoding/json/scanner.go).
const encodingJSONDepth = 10000

// TestPutDeepJSON checks Put at the nesting that other languages' parsers
// read, from both sides: a value whose arrays and objects nest as deep as
// a record may hold them (maxRecordDepth, with the record's own
// valueLevels) is kept and comes back from the next request; a deeper one
// is refused with ErrInvalidValue and the session stays as it was, rather
// than be written in a record that .NET, Ruby or Rust (and past 1,000
// levels, Python) cannot parse, or deeper than encoding/json reads, which
// would make the record unreadable or the commit fail as if Redis were
// down.
func TestPutDeepJSON(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	cookie, id := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "keep", "kept"); err != nil {
			t.Fatal(err)
		}
	})
	deepest := maxValueDepth
	if deepest+valueLevels != 64 {
		t.Fatalf("a record may nest %d levels, want 64", deepest+valueLevels)
	}
	tests := []struct {
		name  string
		depth int
		v     any
		get   func(ctx context.Context, key string) (any, bool)
	}{
		{"arrays one level less", deepest - 1, nestedArrays(deepest - 1), getAs[[]any]},
		{"arrays as deep as a record holds", deepest, nestedArrays(deepest), getAs[[]any]},
		{"objects as deep as a record holds", deepest, nestedObjects(deepest), getAs[map[string]any]},
		{"raw JSON as deep as a record holds", deepest, json.RawMessage(strings.Repeat("[", deepest) + `"]]"` + strings.Repeat("]", deepest)), getAs[json.RawMessage]},
		{"arrays one level deeper", deepest + 1, nestedArrays(deepest + 1), getAs[[]any]},
		{"objects one level deeper", deepest + 1, nestedObjects(deepest + 1), getAs[map[string]any]},
		{"raw JSON one level deeper", deepest + 1, json.RawMessage(strings.Repeat("[", deepest+1) + strings.Repeat("]", deepest+1)), getAs[json.RawMessage]},
		{"arrays past Python's limit", 1500, nestedArrays(1500), getAs[[]any]},
		{"arrays deeper than encoding/json reads", encodingJSONDepth + 1, nestedArrays(encodingJSONDepth + 1), getAs[[]any]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := r.Do(t, "GET", "session:"+id).([]byte)
			var want any
			h, err := exchange(t, m, cookie, func(ctx context.Context) {
				err := Put(ctx, "deep", tc.v)
				switch {
				case tc.depth <= deepest && err != nil:
					t.Errorf("Put(depth %d) = %v, want nil", tc.depth, err)
				case tc.depth > deepest && !errors.Is(err, ErrInvalidValue):
					t.Errorf("Put(depth %d) = %v, want ErrInvalidValue", tc.depth, err)
				}
				want, _ = tc.get(ctx, "deep")
			})
			if err != nil {
				t.Errorf("Commit after Put(depth %d) = %v, want nil", tc.depth, err)
			}
			if c, ok := sessionCookie(m, h); ok {
				t.Errorf("Put(depth %d) set cookie %v, want none", tc.depth, c)
			}
			if after, _ := r.Do(t, "GET", "session:"+id).([]byte); tc.depth > deepest && !bytes.Equal(after, before) {
				t.Errorf("record after a refused Put(depth %d) changed", tc.depth)
			}
			serve(t, m, cookie, func(ctx context.Context) {
				if u, _ := UserID(ctx); u != "alice" {
					t.Fatalf("UserID after Put(depth %d) = %q, want alice", tc.depth, u)
				}
				if v, _ := Get[string](ctx, "keep"); v != "kept" {
					t.Errorf("Get(keep) after Put(depth %d) = %q, want kept", tc.depth, v)
				}
				got, ok := tc.get(ctx, "deep")
				switch {
				case tc.depth <= deepest && (!ok || !reflect.DeepEqual(got, want)):
					t.Errorf("Get(deep) after Put(depth %d): ok = %v, or not the value put", tc.depth, ok)
				case tc.depth > deepest && ok:
					t.Errorf("Get(deep) after a refused Put(depth %d) found a value", tc.depth)
				}
				if err := Remove(ctx, "deep"); err != nil {
					t.Error(err)
				}
			})
		})
	}
}

// TestDeepRecordOfEarlierVersion checks that a record whose value nests
// deeper than Put now takes, as earlier versions wrote them, is still
// read, and that the value is kept as it is when the record is written
// back: the session goes on.
func TestDeepRecordOfEarlierVersion(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	cookie, id := login(t, m, "alice")
	const depth = 1000
	deep := strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth)
	rec, _ := r.Do(t, "GET", "session:"+id).([]byte)
	rec = append(rec[:len(rec)-1], `,"val":{"deep":{"json":`+deep+`}}}`...)
	if r.Do(t, "SET", "session:"+id, rec, "XX", "KEEPTTL") != "OK" {
		t.Fatal("SET of the deep record failed")
	}
	serve(t, m, cookie, func(ctx context.Context) {
		if u, _ := UserID(ctx); u != "alice" {
			t.Fatalf("UserID with a value %d levels deep = %q, want alice", depth, u)
		}
		if v, ok := Get[json.RawMessage](ctx, "deep"); !ok || string(v) != deep {
			t.Errorf("Get(deep) = %.20s, %v; want the value as written", v, ok)
		}
		if err := Put(ctx, "other", 1); err != nil {
			t.Fatal(err)
		}
	})
	after, _ := r.Do(t, "GET", "session:"+id).([]byte)
	if !bytes.Contains(after, []byte(`"other":{"int":1}`)) || !bytes.Contains(after, []byte(`"deep":{"json":`+deep+`}`)) {
		t.Errorf("record written back = %.200s..., want the deep value kept beside the new one", after)
	}
}

// putUnchecked puts v under key as Put does, but without normalize: a
// value Put refuses, standing for one that reaches the encoding of a
// record by any other way.
func putUnchecked(ctx context.Context, key string, v any) {
	st := stateFrom(ctx)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.m.engine.Put(st.engineData(), key, v)
	st.change(key, v)
}

// TestUnencodableValue checks that a value the record cannot take, found
// where a record is encoded (the commit of a logged-in session, which
// merges, or of a new anonymous one, a renewal, the commit of a login),
// fails with ErrInvalidValue, which middleware.Sessions answers
// with 500, and never with ErrStoreUnavailable, a 503 that tells the
// client to try again; and that nothing is written.
func TestUnencodableValue(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	deep := strings.Repeat("[", encodingJSONDepth+1) + strings.Repeat("]", encodingJSONDepth+1)
	bad := jsonValue(deep) // json.Marshal fails: exceeded max depth
	check := func(t *testing.T, what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrInvalidValue) || errors.Is(err, ErrStoreUnavailable) || errors.Is(err, ErrContention) {
			t.Errorf("%s = %v, want ErrInvalidValue alone", what, err)
		}
	}
	cookie, id := login(t, m, "alice")
	record := func() []byte {
		b, _ := r.Do(t, "GET", "session:"+id).([]byte)
		return b
	}

	t.Run("commit merges", func(t *testing.T) {
		before := record()
		_, err := exchange(t, m, cookie, func(ctx context.Context) { putUnchecked(ctx, "bad", bad) })
		check(t, "Commit", err)
		if after := record(); !bytes.Equal(after, before) {
			t.Errorf("record after the failed commit =\n%.200s\nwant unchanged", after)
		}
	})
	t.Run("renewal", func(t *testing.T) {
		before := record()
		_, err := exchange(t, m, cookie, func(ctx context.Context) {
			putUnchecked(ctx, "bad", bad)
			check(t, "Renew", Renew(ctx))
		})
		check(t, "Commit", err)
		if after := record(); !bytes.Equal(after, before) {
			t.Errorf("record after the failed renewal =\n%.200s\nwant unchanged", after)
		}
	})
	if u := userOf(t, m, cookie); u != "alice" {
		t.Fatalf("user after the failed writes = %q, want alice", u)
	}

	t.Run("anonymous commit", func(t *testing.T) {
		size := r.Do(t, "DBSIZE")
		h, err := exchange(t, m, "", func(ctx context.Context) { putUnchecked(ctx, "bad", bad) })
		check(t, "Commit", err)
		if c, ok := sessionCookie(m, h); ok {
			t.Errorf("the failed commit set cookie %v", c)
		}
		if got := r.Do(t, "DBSIZE"); got != size {
			t.Errorf("DBSIZE after the failed commit = %v, want %v", got, size)
		}
	})
	t.Run("login", func(t *testing.T) {
		_, err := exchange(t, m, "", func(ctx context.Context) {
			putUnchecked(ctx, "bad", bad)
			// The login writes its record without the values the
			// request put, which the response saves.
			if _, err := Create(ctx, "bob"); err != nil {
				check(t, "Create", err)
			}
		})
		check(t, "Commit", err)
	})
	t.Run("write after login", func(t *testing.T) {
		_, err := exchange(t, m, "", func(ctx context.Context) {
			if _, err := Create(ctx, "carol"); err != nil {
				t.Fatal(err)
			}
			putUnchecked(ctx, "bad", bad)
		})
		check(t, "Commit", err)
	})
}

// TestInvalidUTF8Keys checks that keys JSON would alter are refused like
// reserved ones, with an error that matches ErrInvalidValue too, as every
// input that the record could not give back does.
func TestInvalidUTF8Keys(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	for _, key := range []string{"\xff", "a\xffb", "caf\xc3", "__\xff"} {
		h, err := exchange(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, key, 1); !errors.Is(err, ErrReservedKey) || !errors.Is(err, ErrInvalidValue) {
				t.Errorf("Put(%q) = %v, want ErrReservedKey and ErrInvalidValue", key, err)
			}
			if err := Remove(ctx, key); !errors.Is(err, ErrReservedKey) || !errors.Is(err, ErrInvalidValue) {
				t.Errorf("Remove(%q) = %v, want ErrReservedKey and ErrInvalidValue", key, err)
			}
			if _, ok := Get[int](ctx, key); ok {
				t.Errorf("Get(%q): ok = true, want false", key)
			}
			if _, ok := Pop[int](ctx, key); ok {
				t.Errorf("Pop(%q): ok = true, want false", key)
			}
		})
		if c, ok := sessionCookie(m, h); ok || err != nil {
			t.Errorf("Put(%q): Set-Cookie %v, Commit %v; want none, nil", key, c, err)
		}
	}
}

// texts holds strings that look like what encoding/json writes for
// replaced invalid UTF-8 but are valid: they must be kept.
type texts struct {
	Replacement, Escape, Both string
	M                         map[string]string
}

// Opaque is an exported type whose data JSON does not keep, to embed.
type Opaque struct{ n int }

// withOpaque embeds an Opaque, whose fields JSON takes into its own (none),
// beside an empty map, which encodes as {}.
type withOpaque struct {
	Name string
	M    map[string]int
	Opaque
}

// bigAndEmpty holds a big.Int, which encodes itself through its pointer
// (when addressable, as behind a pointer), beside an empty map, which
// encodes as {}.
type bigAndEmpty struct {
	V big.Int
	M map[string]int
}

// Failure is an exported interface type, to embed.
type Failure interface{ Error() string }

// failed is an unexported struct type, to embed: JSON takes its exported
// field into the struct around it.
type failed struct{ Err error }

// ptrText holds its data in an unexported field and encodes itself only
// through its pointer: not as a map value, which is not addressable.
type ptrText struct{ n int }

func (p *ptrText) MarshalText() ([]byte, error) { return []byte(strconv.Itoa(p.n)), nil }

// dashed and dashedTime leave a field out of JSON.
type dashed struct {
	Note  string
	Cause error `json:"-"`
}

type dashedTime struct {
	A string
	T time.Time `json:"-"`
}

// tree returns a node with n children, each pointing back to it.
func tree(n int) *node {
	root := &node{Name: "root"}
	for i := range n {
		root.Children = append(root.Children, &node{Name: strconv.Itoa(i), Parent: root})
	}
	return root
}

// stamp embeds a time, whose MarshalJSON it has.
type stamp struct{ time.Time }

// selfEmbed embeds a pointer to its own type, whose fields encoding/json
// takes in once, and keeps its data in an unexported field.
type selfEmbed struct {
	*selfEmbed
	secret string
}

// node is a tree whose children point back to their parent in a field
// JSON skips.
type node struct {
	Name     string
	Parent   *node `json:"-"`
	Children []*node
}

// getAs returns Get[T] as an any, for tables of values of several types.
func getAs[T any](ctx context.Context, key string) (any, bool) { return Get[T](ctx, key) }

// TestValuesRoundTrip checks that values at the edges of what a record can
// hold come back equal from a later request, having gone through Redis.
func TestValuesRoundTrip(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	lmt := time.Date(1850, 6, 1, 12, 0, 0, 0, ny)
	if _, off := lmt.Zone(); off != -(4*3600 + 56*60 + 2) {
		t.Fatalf("New York in 1850: offset %ds, want -4:56:02", off)
	}
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	sameTime := func(a, b any) bool { return a.(time.Time).Equal(b.(time.Time)) }
	sameFloat := func(a, b any) bool {
		x, y := a.(float64), b.(float64)
		return x == y && math.Signbit(x) == math.Signbit(y)
	}
	tests := []struct {
		name string
		v    any
		get  func(ctx context.Context, key string) (any, bool)
		same func(a, b any) bool // nil: reflect.DeepEqual
	}{
		{"time with an offset of seconds", lmt, getAs[time.Time], sameTime},
		{"time in New York today", time.Date(2026, 7, 4, 9, 30, 0, 1, ny), getAs[time.Time], sameTime},
		{"year 0", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), getAs[time.Time], sameTime},
		{"year 0 east of UTC", time.Date(0, 1, 1, 0, 30, 0, 0, time.FixedZone("E", 3600)), getAs[time.Time], sameTime},
		{"year 9999", time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), getAs[time.Time], sameTime},
		{"U+FFFD and the text \\ufffd", "\uFFFD and `\\ufffd` and \\\\ufffd", getAs[string], nil},
		{"struct with U+FFFD and the text \\ufffd", texts{
			Replacement: "x\uFFFDy",
			Escape:      `\ufffd`,
			Both:        `\\ufffd` + "\uFFFD" + `\`,
			M:           map[string]string{"\uFFFD": `\ufffd`, `\ufffd`: "\uFFFD"},
		}, getAs[texts], nil},
		{"line separator", "a\u2028b\x00c", getAs[string], nil},
		{"negative zero", math.Copysign(0, -1), getAs[float64], sameFloat},
		{"largest float", math.MaxFloat64, getAs[float64], sameFloat},
		{"smallest float", math.SmallestNonzeroFloat64, getAs[float64], sameFloat},
		{"int64 max", int64(math.MaxInt64), getAs[int64], nil},
		{"int64 min", int64(math.MinInt64), getAs[int64], nil},
		{"int max", math.MaxInt, getAs[int], nil},
		{"every byte", allBytes, getAs[[]byte], nil},
		// Beside the structs Put refuses (TestPutRefuses), which JSON keeps
		// nothing of, these are kept.
		{"errors by field, none set", map[string]error{"email": nil}, getAs[map[string]error], nil},
		{"the text {}", map[string]string{"k": "{}"}, getAs[map[string]string], nil},
		{"number that encodes itself through its pointer", &bigAndEmpty{V: *big.NewInt(5), M: map[string]int{}}, getAs[bigAndEmpty],
			func(got, put any) bool {
				v := got.(bigAndEmpty)
				return put.(*bigAndEmpty).V.Cmp(&v.V) == 0
			}},
		{"embedded struct JSON keeps nothing of", withOpaque{Name: "a", M: map[string]int{}, Opaque: Opaque{1}}, getAs[withOpaque],
			func(got, put any) bool { return got.(withOpaque).Name == put.(withOpaque).Name }},
		// Fields tagged json:"-" are left out, whatever they hold: a walk
		// of them would follow the parent pointers for ever.
		{"tree with parent pointers JSON skips", tree(8), getAs[node],
			func(got, put any) bool { return len(got.(node).Children) == 8 }},
		{`error in a field tagged json:"-", beside the text {}`, dashed{Note: "{}", Cause: errors.New("card declined")}, getAs[dashed],
			func(got, put any) bool { return got.(dashed).Note == "{}" }},
		{"embedded time", stamp{time.Date(2026, 7, 4, 9, 30, 0, 1, ny)}, getAs[stamp],
			func(got, put any) bool { return got.(stamp).Equal(put.(stamp).Time) }},
		{`time with an offset of seconds in a field tagged json:"-"`, dashedTime{A: "a", T: lmt}, getAs[dashedTime],
			func(got, put any) bool { return got.(dashedTime).A == "a" }},
	}
	m, _, _ := newTestManager(t, Config{})
	cookie, _ := login(t, m, "alice")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := exchange(t, m, cookie, func(ctx context.Context) {
				if err := Put(ctx, "v", tc.v); err != nil {
					t.Errorf("Put(%#v) = %v, want nil", tc.v, err)
				}
			})
			if err != nil {
				t.Errorf("Commit after Put(%#v) = %v, want nil", tc.v, err)
			}
			serve(t, m, cookie, func(ctx context.Context) {
				got, ok := tc.get(ctx, "v")
				same := tc.same
				if same == nil {
					same = reflect.DeepEqual
				}
				if !ok || !same(got, tc.v) {
					t.Errorf("Get after Put(%#v) = %#v, %v; want the same value", tc.v, got, ok)
				}
			})
		})
	}
}

// TestNilBytes pins what a nil []byte comes back as: an empty, non-nil
// []byte, in the request that put it as in the next. The record holds it as
// {"bytes":""}, as it holds an empty one: a base64 string, which every
// reader of the record expects there.
func TestNilBytes(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	cookie, id := login(t, m, "alice")
	check := func(ctx context.Context, when string) {
		if b, ok := Get[[]byte](ctx, "b"); !ok || b == nil || len(b) != 0 {
			t.Errorf("Get[[]byte] %s = %#v, %v; want []byte{}, true", when, b, ok)
		}
	}
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "b", []byte(nil)); err != nil {
			t.Fatal(err)
		}
		check(ctx, "in the request that put nil")
	})
	serve(t, m, cookie, func(ctx context.Context) { check(ctx, "in the next request") })
	if rec, _ := r.Do(t, "GET", "session:"+id).([]byte); !bytes.Contains(rec, []byte(`"b":{"bytes":""}`)) {
		t.Errorf("record = %s, want \"b\":{\"bytes\":\"\"}", rec)
	}
}

// TestPutTimeOffsets checks times whose zone offset RFC 3339 cannot write
// as it is: Put must refuse them (ErrInvalidValue) or keep them as the same
// instant, and never store what a later request cannot read.
func TestPutTimeOffsets(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	type event struct{ At time.Time }
	lmt := time.Date(1850, 6, 1, 12, 0, 0, 0, ny) // offset -4:56:02
	tests := []struct {
		name string
		v    any
		get  func(ctx context.Context, key string) (any, bool)
		at   func(v any) time.Time
	}{
		{"offset of 25 hours", time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 25*3600)),
			getAs[time.Time], func(v any) time.Time { return v.(time.Time) }},
		{"offset of -99:59", time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", -(99*3600+59*60))),
			getAs[time.Time], func(v any) time.Time { return v.(time.Time) }},
		{"offset of seconds", lmt,
			getAs[time.Time], func(v any) time.Time { return v.(time.Time) }},
		// Other types follow encoding/json's rules (documented on Put): it
		// refuses an offset of 24 hours or more, and writes a time's offset
		// in whole minutes, which would move the instant of one with
		// seconds: Put refuses those.
		{"struct with an offset of 25 hours", event{time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 25*3600))},
			getAs[event], func(v any) time.Time { return v.(event).At }},
		{"struct with an offset of seconds", event{lmt},
			getAs[event], func(v any) time.Time { return v.(event).At }},
		{"pointer to a struct with an offset of seconds", &event{lmt},
			getAs[event], func(v any) time.Time {
				if e, ok := v.(*event); ok {
					return e.At
				}
				return v.(event).At
			}},
		{"map with an offset of seconds", map[string]time.Time{"born": lmt},
			getAs[map[string]time.Time], func(v any) time.Time { return v.(map[string]time.Time)["born"] }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _ := newTestManager(t, Config{})
			cookie, _ := login(t, m, "alice")
			refused := false
			_, err := exchange(t, m, cookie, func(ctx context.Context) {
				if err := Put(ctx, "keep", "kept"); err != nil {
					t.Fatal(err)
				}
				err := Put(ctx, "v", tc.v)
				refused = errors.Is(err, ErrInvalidValue)
				if err != nil && !refused {
					t.Errorf("Put(%v) = %v, want nil or ErrInvalidValue", tc.v, err)
				}
			})
			if err != nil {
				t.Errorf("Commit after Put(%v) = %v, want nil", tc.v, err)
			}
			serve(t, m, cookie, func(ctx context.Context) {
				if u, _ := UserID(ctx); u != "alice" {
					t.Errorf("UserID after Put(%v) = %q, want alice: the record was unreadable", tc.v, u)
				}
				if v, _ := Get[string](ctx, "keep"); v != "kept" {
					t.Errorf("Get(keep) after Put(%v) = %q, want kept", tc.v, v)
				}
				got, ok := tc.get(ctx, "v")
				switch {
				case refused && ok:
					t.Errorf("Get after a refused Put(%v) = %v, want nothing", tc.v, got)
				case !refused && (!ok || !tc.at(got).Equal(tc.at(tc.v))):
					t.Errorf("Get after Put(%v) = %v, %v; want the same instant", tc.v, got, ok)
				}
			})
		})
	}
}

// TestPopWrongType pops a value as a type it does not fit: Pop returns
// false and the value stays, in the request and in the record; popped as
// its own type it goes.
func TestPopWrongType(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	cookie, _ := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "flash", "Saved!"); err != nil {
			t.Fatal(err)
		}
	})
	serve(t, m, cookie, func(ctx context.Context) {
		if v, ok := Pop[int](ctx, "flash"); ok {
			t.Errorf("Pop[int] of a string = %v, true; want false", v)
		}
		if v, ok := Get[string](ctx, "flash"); !ok || v != "Saved!" {
			t.Errorf("Get after Pop[int] = %q, %v; want the value kept", v, ok)
		}
	})
	serve(t, m, cookie, func(ctx context.Context) {
		if v, ok := Pop[string](ctx, "flash"); !ok || v != "Saved!" {
			t.Errorf("Pop[string] in the next request = %q, %v; want Saved!", v, ok)
		}
	})
	serve(t, m, cookie, func(ctx context.Context) {
		if v, ok := Get[string](ctx, "flash"); ok {
			t.Errorf("Get after Pop[string] = %q; want it gone", v)
		}
	})
}

// TestBytesCopied writes into the slice given to Put and into the one Get
// returned: neither write reaches the session, in the request or in the
// record, as for a value of any other type.
func TestBytesCopied(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	cookie, _ := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		b := []byte("token-A")
		if err := Put(ctx, "b", b); err != nil {
			t.Fatal(err)
		}
		copy(b, "XXXXX")
		got, _ := Get[[]byte](ctx, "b")
		copy(got, "YYYYY")
		if got, _ := Get[[]byte](ctx, "b"); string(got) != "token-A" {
			t.Errorf("Get in the request = %q, want token-A", got)
		}
	})
	serve(t, m, cookie, func(ctx context.Context) {
		if got, _ := Get[[]byte](ctx, "b"); string(got) != "token-A" {
			t.Errorf("Get in the next request = %q, want token-A", got)
		}
	})
}

// filters keeps its state unexported and encodes it itself, so JSON keeps
// all of it, {} when the map is empty.
type filters struct{ m map[string][]string }

func (f filters) MarshalJSON() ([]byte, error) { return json.Marshal(f.m) }

func (f *filters) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &f.m) }

// TestPutSelfEncoding puts values of a type with unexported fields only
// and its own MarshalJSON, empty and not: Put refuses neither (it refuses
// such a type only when JSON would drop its data), and Get gives them back.
func TestPutSelfEncoding(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	cookie, _ := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		for key, v := range map[string]filters{"empty": {m: map[string][]string{}}, "full": {m: map[string][]string{"tag": {"go"}}}} {
			if err := Put(ctx, key, v); err != nil {
				t.Errorf("Put(%s filters) = %v, want nil", key, err)
			}
		}
	})
	serve(t, m, cookie, func(ctx context.Context) {
		if f, ok := Get[filters](ctx, "full"); !ok || len(f.m["tag"]) != 1 {
			t.Errorf("Get(full) = %+v, %v", f, ok)
		}
		if f, ok := Get[filters](ctx, "empty"); !ok || f.m == nil || len(f.m) != 0 {
			t.Errorf("Get(empty) = %+v, %v; want an empty map", f, ok)
		}
	})
}

// TestPutNestedOffsetSeconds puts times with a zone offset of seconds
// deeper inside other values, which encoding/json would write moved by
// those seconds: Put refuses each; the same values in UTC, or in a zone of
// whole minutes, are taken.
func TestPutNestedOffsetSeconds(t *testing.T) {
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Fatal(err)
	}
	lmt := time.Date(1900, 1, 2, 3, 4, 5, 0, ams) // offset +0:19:32
	type person struct {
		Name  string
		Born  *time.Time
		Dates []any
	}
	m, _, _ := newTestManager(t, Config{})
	serve(t, m, "", func(ctx context.Context) {
		for name, v := range map[string]any{
			"slice of any":          []any{"x", lmt},
			"map of any in a slice": []map[string]any{{"born": lmt}},
			"pointer field":         person{Name: "p", Born: &lmt},
			"deep in a struct":      person{Dates: []any{map[string]any{"at": lmt}}},
		} {
			if err := Put(ctx, "v", v); !errors.Is(err, ErrInvalidValue) {
				t.Errorf("Put(%s) = %v, want ErrInvalidValue", name, err)
			}
			utc := lmt.UTC()
			if err := Put(ctx, "v", person{Born: &utc, Dates: []any{time.Date(2026, 1, 2, 3, 4, 5, 0, ams)}}); err != nil {
				t.Errorf("Put of the same in UTC and whole minutes = %v, want nil", err)
			}
		}
	})
}

// TestPortable checks portable on JSON that encoding/json may write:
// numbers up to float64's range and below its smallest, long ones, and
// digits and exponents inside strings pass; numbers past float64's range,
// where an object, an array or a string leaves off, do not.
func TestPortable(t *testing.T) {
	for _, tc := range []struct {
		json string
		ok   bool
	}{
		{`{"a":{"a":1},"b":[{"a":2},{"a":3}]}`, true},
		{`[1.7976931348623157e308,-1e308,1e-400,-0,9007199254740993,18446744073709551615]`, true},
		{`["1e400","-1e999",{"1e400":"9999e9999"}]`, true},
		{`[0.` + strings.Repeat("1", 5000) + `]`, true},
		{`{"k":1e309}`, false},
		{`[-1E400]`, false},
		{`["x",1` + strings.Repeat("0", 309) + `]`, false},
		{`{"a":"\"",b:2e400}`, false},
	} {
		if err := portable([]byte(tc.json)); (err == nil) != tc.ok {
			t.Errorf("portable(%.60s) = %v, want ok %v", tc.json, err, tc.ok)
		}
	}
}
