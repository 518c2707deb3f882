package testenv

import "testing"

func TestTokenScanFindsWholeTokensAndJWTSignatures(t *testing.T) {
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
	scan := NewTokenScan([]string{"opaque-refresh-token", jwt, ""})
	for _, tc := range []struct {
		text string
		want bool
	}{
		{`msg="rotated" token=opaque-refresh-token`, true},
		{"header " + jwt, true},
		{"cut at the dot: c2lnbmF0dXJlLW9mLXRoZS10b2tlbg", true},
		{"only the claims: eyJzdWIiOiJ1In0", false},
		{"nothing here", false},
		{"", false},
	} {
		if got := scan.Found(tc.text); got != tc.want {
			t.Errorf("Found(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
	if scan.Empty() {
		t.Error("a scan with tokens says it is empty")
	}
	if !NewTokenScan([]string{""}).Empty() || NewTokenScan(nil).Found("anything") {
		t.Error("a scan without tokens must be empty and find nothing")
	}
}
