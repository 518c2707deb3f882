package tokenchain

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jobtoken/jobtoken/internal/issuer"
)

// errCrashed is what every write returns once the simulated process has died.
var errCrashed = errors.New("crashed")

// fakeStore keeps the last record written; from write number crashAt on (1-based; 0
// never) every write fails, as if the process had died just before it.
type fakeStore struct {
	stored  map[string][]byte
	writes  int
	crashAt int
}

func (s *fakeStore) Save(_ context.Context, r *Record) error {
	s.writes++
	if s.crashAt > 0 && s.writes >= s.crashAt {
		return errCrashed
	}
	s.stored = r.Encode()
	return nil
}

// load is the record a restarted process reads.
func (s *fakeStore) load() *Record {
	r := Decode(maps.Clone(s.stored))
	return &r
}

// fakeIssuer answers the first request with answer and later ones with success. It
// records the refresh tokens and one-shot grant inputs it spent (success, dead chain, or
// an answer lost after the issuer acted), and every presentation of a spent one: the
// replay a real issuer punishes by revoking the token family.
type fakeIssuer struct {
	answer  issuer.Class // "" is success
	calls   int
	next    int
	spent   map[string]bool
	replays []string
}

func (f *fakeIssuer) respond(token string) (*issuer.TokenSet, error) {
	f.calls++
	answer := f.answer
	if f.calls > 1 {
		answer = ""
	}
	if token != "" {
		if f.spent[token] {
			f.replays = append(f.replays, token)
		}
		if answer == "" || answer == issuer.ClassDeadChain || answer == issuer.ClassOutcomeUnknown {
			f.spent[token] = true
		}
	}
	if answer != "" {
		return nil, &issuer.Error{Class: answer, Op: "test"}
	}
	f.next++
	now := time.Unix(1_000_000, 0)
	return &issuer.TokenSet{
		AccessToken: fmt.Sprintf("at-%d", f.next), RefreshToken: fmt.Sprintf("rt-%d", f.next),
		IssuedAt: now, ExpiresAt: now.Add(time.Minute), TokenType: "Bearer",
	}, nil
}

func (f *fakeIssuer) Mint(_ context.Context, g issuer.Grant) (*issuer.TokenSet, error) {
	return f.respond(g.RefreshToken) // the one-shot input, empty for a remintable grant
}

func (f *fakeIssuer) Refresh(_ context.Context, rt string) (*issuer.TokenSet, error) {
	return f.respond(rt)
}

// state is a stored chain as a pass finds it, and the operation the pass runs on it.
type state struct {
	name string
	// record returns the stored record; oneShot is the grant's kind.
	record func(oneShot bool) Record
	// run is the pass's operation.
	run func(ctx context.Context, c *Chain) Outcome
}

var now = time.Unix(2_000_000, 0)

func validChain(bool) Record {
	return Record{AccessToken: "at-0", RefreshToken: "rt-0", Generation: 1, ExpiresAt: now.Add(time.Minute)}
}

var states = []state{
	{"new job, first mint", func(oneShot bool) Record { return Initial(oneShot, now) },
		func(ctx context.Context, c *Chain) Outcome { return c.First(ctx) }},
	{"valid chain, scheduled refresh", validChain,
		func(ctx context.Context, c *Chain) Outcome { return c.Refresh(ctx, "scheduled") }},
	{"valid chain, session maximum", validChain,
		func(ctx context.Context, c *Chain) Outcome { return c.Remint(ctx, "SessionMaximum", "the chain ends") }},
	{"chain without refresh token", func(bool) Record {
		return Record{AccessToken: "at-0", Generation: 1, ExpiresAt: now.Add(time.Minute)}
	}, func(ctx context.Context, c *Chain) Outcome { return c.Refresh(ctx, "scheduled") }},
	{"refresh marker found", func(bool) Record {
		r := validChain(false)
		r.InFlight = Marker(OpRefresh, 1, now)
		return r
	}, func(ctx context.Context, c *Chain) Outcome { return c.Ensure(ctx, false) }},
	{"redeem marker found", func(bool) Record { return Record{InFlight: Marker(OpRedeem, 0, now)} },
		func(ctx context.Context, c *Chain) Outcome { return c.Ensure(ctx, false) }},
	{"no access token, input redeemed", func(oneShot bool) Record { return Record{GrantRedeemed: oneShot} },
		func(ctx context.Context, c *Chain) Outcome { return c.Ensure(ctx, false) }},
	{"no access token, input never spent", func(bool) Record { return Record{} },
		func(ctx context.Context, c *Chain) Outcome { return c.Ensure(ctx, false) }},
	{"usable chain", validChain,
		func(ctx context.Context, c *Chain) Outcome { return c.Ensure(ctx, false) }},
}

// TestChainStateMachine runs every stored state × grant kind × issuer answer × crash
// point, then restarts the process on what was stored (with a healthy issuer) until the
// chain rotated once more, and checks the invariant: no refresh token or one-shot input
// is presented after it was spent, and the chain ends usable or its loss is reported.
func TestChainStateMachine(t *testing.T) {
	answers := []issuer.Class{"", issuer.ClassTransient, issuer.ClassDeadChain, issuer.ClassOutcomeUnknown, issuer.ClassConfiguration}
	const oneShotInput = "handed-over-token"
	cases := 0
	for _, st := range states {
		for _, oneShot := range []bool{false, true} {
			for _, answer := range answers {
				for crashAt := 0; crashAt <= 3; crashAt++ {
					cases++
					name := fmt.Sprintf("%s/oneShot=%v/answer=%q/crash=%d", st.name, oneShot, answer, crashAt)
					t.Run(name, func(t *testing.T) {
						ctx := context.Background()
						initial := st.record(oneShot)
						store := &fakeStore{stored: initial.Encode(), crashAt: crashAt}
						iss := &fakeIssuer{answer: answer, spent: map[string]bool{}}
						grant := func(context.Context) (issuer.Grant, error) {
							if oneShot {
								return issuer.Grant{Type: issuer.GrantRefreshToken, RefreshToken: oneShotInput}, nil
							}
							return issuer.Grant{Type: issuer.GrantPassword, Username: "u", Password: "p"}, nil
						}
						// The issuer's slot: taken before anything is written for a request,
						// given back exactly once, and never held when the issuer is called twice.
						held := 0
						take := func() (func(), error) {
							held++
							if held > 1 {
								t.Errorf("a slot taken while another is held")
							}
							released := false
							return func() {
								if released {
									t.Errorf("a slot released twice")
								}
								released = true
								held--
							}, nil
						}
						chainOf := func(r *Record) *Chain {
							return &Chain{Record: r, Store: store, Issuer: iss, CanRemint: !oneShot, Grant: grant, Now: now, BeforeRequest: take}
						}
						// A re-mint keeps the refresh token of the chain it replaced, for
						// revocation at the job's end: after a lost answer that chain may
						// live on at the issuer.
						keptReplaced := func(before string, out Outcome) {
							if out.Kind == Reminted && before != "" && !slices.Contains(store.load().Replaced, before) {
								t.Errorf("a re-mint dropped the replaced chain's refresh token %q: replaced %q", before, store.load().Replaced)
							}
						}
						first := store.load()
						out := st.run(ctx, chainOf(first))
						keptReplaced(initial.RefreshToken, out)
						history := []Kind{out.Kind}
						lost := out.Kind == Lost
						// Restart on what was stored, with writes working again, and go on
						// until the chain has rotated once more (or its loss is reported):
						// a token wrongly kept as unspent is presented again there.
						store.crashAt = 0
						for pass := 0; pass < 4 && !lost; pass++ {
							rec := store.load()
							if rec.Usable() {
								out = chainOf(rec).Refresh(ctx, "next rotation")
								history = append(history, out.Kind)
								if out.Kind == Rotated {
									break
								}
								continue
							}
							before := rec.RefreshToken
							out = chainOf(rec).Ensure(ctx, false)
							keptReplaced(before, out)
							history = append(history, out.Kind)
							lost = out.Kind == Lost
						}
						if held != 0 {
							t.Errorf("%d issuer slots still held after the passes", held)
						}
						if len(iss.replays) > 0 {
							t.Errorf("spent tokens presented again: %q (history %v)", iss.replays, history)
						}
						final := store.load()
						if !final.Usable() && !lost {
							t.Errorf("the chain ended unusable without a reported loss: record %+v, history %v", *final, history)
						}
						if lost && final.InFlight == "" && final.AccessToken != "" && final.RefreshToken != "" {
							t.Errorf("a loss was reported for a chain that holds a usable pair: %+v, history %v", *final, history)
						}
						if out.Kind == Failed && out.Err == nil {
							t.Errorf("Failed without an error")
						}
					})
				}
			}
		}
	}
	if want := len(states) * 2 * len(answers) * 4; cases != want {
		t.Fatalf("ran %d cases, want %d", cases, want)
	}
}

// Outcomes of the passes that find nothing to do, or a first mint, are what the
// controller reports.
func TestChainOutcomeKinds(t *testing.T) {
	ctx := context.Background()
	run := func(r Record, oneShot bool, op func(*Chain) Outcome) (Outcome, *fakeStore, *fakeIssuer) {
		store := &fakeStore{stored: r.Encode()}
		iss := &fakeIssuer{spent: map[string]bool{}}
		rec := store.load()
		c := &Chain{Record: rec, Store: store, Issuer: iss, CanRemint: !oneShot, Now: now,
			Grant: func(context.Context) (issuer.Grant, error) { return issuer.Grant{}, nil }}
		return op(c), store, iss
	}
	cases := []struct {
		name    string
		record  Record
		oneShot bool
		op      func(*Chain) Outcome
		want    Kind
		writes  int
	}{
		{"first mint", Initial(false, now), false, func(c *Chain) Outcome { return c.First(ctx) }, Minted, 1},
		{"first redeem", Initial(true, now), true, func(c *Chain) Outcome { return c.First(ctx) }, Minted, 1},
		{"refresh", validChain(false), false, func(c *Chain) Outcome { return c.Refresh(ctx, "scheduled") }, Rotated, 2},
		{"rotation by minting", Record{AccessToken: "a", Generation: 1}, false, func(c *Chain) Outcome { return c.Refresh(ctx, "scheduled") }, Rotated, 1},
		{"re-mint", validChain(false), false, func(c *Chain) Outcome { return c.Remint(ctx, "SessionMaximum", "") }, Reminted, 1},
		{"usable chain", validChain(false), false, func(c *Chain) Outcome { return c.Ensure(ctx, false) }, Unchanged, 0},
		{"marker, remintable", func() Record { r := validChain(false); r.InFlight = Marker(OpRefresh, 1, now); return r }(), false,
			func(c *Chain) Outcome { return c.Ensure(ctx, false) }, Reminted, 2},
		{"marker, one-shot", func() Record { r := validChain(true); r.InFlight = Marker(OpRefresh, 1, now); return r }(), true,
			func(c *Chain) Outcome { return c.Ensure(ctx, false) }, Lost, 0},
		{"one-shot input not spent by an earlier pass", Record{}, true, func(c *Chain) Outcome { return c.Ensure(ctx, false) }, Minted, 2},
		{"loss already reported", func() Record { r := validChain(true); r.InFlight = Marker(OpRefresh, 1, now); return r }(), true,
			func(c *Chain) Outcome { return c.Ensure(ctx, true) }, Lost, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, store, iss := run(tc.record, tc.oneShot, tc.op)
			if out.Kind != tc.want {
				t.Errorf("outcome %s (%v), want %s", out.Kind, out.Err, tc.want)
			}
			if store.writes != tc.writes {
				t.Errorf("%d writes, want %d", store.writes, tc.writes)
			}
			if tc.want == Unchanged || tc.want == Lost {
				if iss.calls != 0 {
					t.Errorf("%d issuer calls for %s", iss.calls, tc.want)
				}
			}
			if r := store.load(); tc.want == Rotated && (r.Rotations != 1 || !r.RotatedAt.Equal(now)) {
				t.Errorf("rotation not counted in the record: rotations %d at %s", r.Rotations, r.RotatedAt)
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := Record{
		RefreshToken: "rt", AccessToken: "at", ChainEndsAt: now.Add(time.Hour), Generation: 7,
		InFlight: Marker(OpRefresh, 7, now), IssuedAt: now, ExpiresAt: now.Add(time.Minute), TokenType: "Bearer",
		KeyID: "k1", GrantRedeemed: true, Rotations: 5, Remints: 1, RotatedAt: now,
		Replaced: []string{"rt-a", "rt-b"},
	}
	got := Decode(r.Encode())
	if !equalRecords(got, r) {
		t.Fatalf("round trip changed the record:\n got %+v\nwant %+v", got, r)
	}
	if got.InFlightOp() != OpRefresh {
		t.Errorf("in-flight op %q", got.InFlightOp())
	}
	keys := slices.Sorted(maps.Keys(r.Encode()))
	for _, k := range []string{KeyRefreshToken, KeyAccessToken, KeyGeneration, KeyInFlight, KeyRotations} {
		if !slices.Contains(keys, k) {
			t.Errorf("encoded record has no key %s: %v", k, keys)
		}
	}
}

func equalRecords(a, b Record) bool {
	return a.RefreshToken == b.RefreshToken && a.AccessToken == b.AccessToken && a.ChainEndsAt.Equal(b.ChainEndsAt) &&
		a.Generation == b.Generation && a.InFlight == b.InFlight && a.IssuedAt.Equal(b.IssuedAt) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		a.TokenType == b.TokenType && a.KeyID == b.KeyID && a.GrantRedeemed == b.GrantRedeemed &&
		a.Rotations == b.Rotations && a.Remints == b.Remints && a.RotatedAt.Equal(b.RotatedAt) &&
		slices.Equal(a.Replaced, b.Replaced)
}

// TestReplacedIsBounded: a record keeps at most MaxReplaced replaced refresh tokens, the
// newest, each once.
func TestReplacedIsBounded(t *testing.T) {
	r := Record{}
	for i := range MaxReplaced + 3 {
		r.RefreshToken = fmt.Sprintf("rt-%d", i)
		r.replace()
		r.replace()
	}
	if len(r.Replaced) != MaxReplaced || r.Replaced[0] != "rt-3" || r.Replaced[MaxReplaced-1] != fmt.Sprintf("rt-%d", MaxReplaced+2) {
		t.Fatalf("replaced %q", r.Replaced)
	}
	r = Record{}
	r.replace()
	if r.Replaced != nil {
		t.Fatalf("no refresh token, yet replaced %q", r.Replaced)
	}
}
