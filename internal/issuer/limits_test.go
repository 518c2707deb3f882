package issuer

import (
	"context"
	"strings"
	"testing"
)

// TestMaxTokenSize: an access or refresh token longer than the limit is refused with an
// error that gives its size and the limit, never its bytes; a refresh whose answer is
// refused may have rotated the chain, so it is OutcomeUnknown (never replayed). FOLIO's
// cookies are bounded the same way, and an answer whose headers exceed the transport's
// bound is refused before it is held in memory.
func TestMaxTokenSize(t *testing.T) {
	ctx := context.Background()
	big := strings.Repeat("A", DefaultMaxTokenBytes+1)
	fits := strings.Repeat("b", DefaultMaxTokenBytes)
	for _, tc := range []struct {
		name      string
		body      string
		op        string
		max       int
		wantClass Class
		wantIn    string
	}{
		{"access token over the default", `{"access_token":"` + big + `","expires_in":60}`, "mint", 0, ClassConfiguration, "access token is 8193 bytes, more than the 8192 allowed"},
		{"refresh token over the default", `{"access_token":"a","refresh_token":"` + big + `","expires_in":60}`, "mint", 0, ClassConfiguration, "refresh token is 8193 bytes"},
		{"refresh answered with an oversized token", `{"access_token":"` + big + `","refresh_token":"r","expires_in":60}`, "refresh", 0, ClassOutcomeUnknown, "access token is 8193 bytes"},
		{"a lower limit", `{"access_token":"` + fits + `","expires_in":60}`, "mint", 1024, ClassConfiguration, "more than the 1024 allowed"},
		{"at the limit", `{"access_token":"` + fits + `","refresh_token":"` + fits + `","expires_in":60}`, "mint", 0, "", ""},
		{"a higher limit", `{"access_token":"` + big + `","expires_in":60}`, "mint", 2 * DefaultMaxTokenBytes, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, respond(200, tc.body))
			o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) { c.MaxTokenBytes = tc.max })
			var err error
			if tc.op == "mint" {
				_, err = o.Mint(ctx, Grant{Type: GrantClientCredentials})
			} else {
				_, err = o.Refresh(ctx, "rt-1")
			}
			if tc.wantClass == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			e := asError(t, err)
			if e.Class != tc.wantClass || !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("got %s %q, want %s with %q", e.Class, err, tc.wantClass, tc.wantIn)
			}
			if strings.Contains(err.Error(), "AAAA") || strings.Contains(err.Error(), "bbbb") {
				t.Fatalf("the error carries token bytes: %.200s", err)
			}
		})
	}

	t.Run("folio cookie", func(t *testing.T) {
		rec := newRecorder(t, folioAnswer(big, "rt", 60, 600, true, "{}"))
		_, err := newTestFOLIO(t, rec.URL, nil).Refresh(ctx, "rt-1")
		if e := asError(t, err); e.Class != ClassOutcomeUnknown || !strings.Contains(err.Error(), "access token is 8193 bytes") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("response headers over the transport's bound", func(t *testing.T) {
		huge := strings.Repeat("C", maxResponseHeaderBytes+1)
		rec := newRecorder(t, folioAnswer(huge, "rt", 60, 600, true, "{}"))
		// The token limit is lifted, so only the header bound can refuse the answer.
		f := newTestFOLIO(t, rec.URL, func(c *FOLIOConfig) {
			c.HTTPClient, c.MaxTokenBytes = NewHTTPClient(HTTPOptions{}), 1<<20
		})
		_, err := f.Mint(ctx, Grant{Type: GrantPassword, Username: "u", Password: "p"})
		if err == nil || strings.Contains(err.Error(), "CCCC") {
			t.Fatalf("got %.300v", err)
		}
	})
}
