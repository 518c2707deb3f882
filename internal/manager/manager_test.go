package manager

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestParseWatchNamespaces: the flag's list is trimmed and deduplicated, and a name that
// cannot be a namespace is refused with an error quoting it.
func TestParseWatchNamespaces(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " team-a, team-b ,,team-a", want: []string{"team-a", "team-b"}},
		{in: "team-a,Team_B", wantErr: `"Team_B" is not a namespace name`},
	} {
		got, err := ParseWatchNamespaces(tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case !slices.Equal(got, tc.want):
			t.Errorf("%q: %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestCacheNamespaces: without a list the cache watches every namespace; with one, the
// listed namespaces and the operator's own, where its stored chains live.
func TestCacheNamespaces(t *testing.T) {
	if got := cacheNamespaces(Options{VaultNamespace: "jobtoken-system"}); got != nil {
		t.Fatalf("no list: %v, want every namespace (nil)", got)
	}
	got := slices.Sorted(maps.Keys(cacheNamespaces(Options{VaultNamespace: "jobtoken-system", WatchNamespaces: []string{"team-a", "team-b"}})))
	if want := []string{"jobtoken-system", "team-a", "team-b"}; !slices.Equal(got, want) {
		t.Fatalf("watched %v, want %v", got, want)
	}
}
