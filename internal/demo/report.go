package demo

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Print writes the final table, with where each number came from.
func (r *Report) Print(w io.Writer, o Options) {
	b, j := r.Baseline, r.Jobtoken
	row := func(what, base, jt, source string) {
		_, _ = fmt.Fprintf(w, "  %-34s %-14s %-14s %s\n", what, base, jt, source)
	}
	n := func(v int64) string { return fmt.Sprint(v) }
	_, _ = fmt.Fprintf(w, "\nResult after %s (access tokens %s, session maximum %s, %d workers per side)\n\n",
		r.Elapsed.Round(time.Second), o.AccessTTL, o.SessionMax, o.Workers)
	row("", "baseline", "jobtoken", "source")
	row("records imported", n(b.Imported.Load()), n(j.Imported.Load()), "workers (HTTP 200 from the import API)")
	row("records lost", n(b.Failed.Load()), n(j.Failed.Load()), "workers (gave up on a record)")
	row("calls to the import API", n(b.Calls.Load()), n(j.Calls.Load()), "workers (every HTTP request)")
	row("401 responses", n(b.Unauthorized.Load()), n(j.Unauthorized.Load()), "workers (every 401, retried or not)")
	row("401s recovered by a newer token", "-", n(j.Retried.Load()), "workers (pkg/tokenfile retry)")
	first := "-"
	if r.FirstBaseline401After > 0 {
		first = r.FirstBaseline401After.Round(time.Second).String()
	}
	row("first 401 after", first, "-", "baseline workers")
	row("rotations", "-", n(r.Rotations), "ImportJob status.rotations")
	row("re-mints (session maximum etc.)", "-", n(r.Remints), "ImportJob status.remints")
	row("refreshes into the session maximum", "-", n(r.SessionMaxima), "issuer counter sessionMaxEnded")
	row("refresh-token replays", "-", n(r.RefreshReuse), "issuer counter refreshReuse")
	row("tokens active after the job", "-", fmt.Sprintf("%d of %d", r.TokensActiveAfterEnd, r.TokensSeen), "issuer introspection of every token handed out")
	row("Revoked condition", "-", fmt.Sprint(r.Revoked), "ImportJob status")
	reasons := make([]string, 0, len(r.Resource401))
	for k, v := range r.Resource401 {
		reasons = append(reasons, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(reasons)
	_, _ = fmt.Fprintf(w, "\n  import API (issuer counters): %d accepted, 401 by reason: %s; user logouts %d; signing-key rotations %d\n",
		r.ResourceAccepted, strings.Join(reasons, " "), r.Logouts, r.KeyRotations)
	if j.Unauthorized.Load() > 0 {
		_, _ = fmt.Fprintf(w, "  jobtoken 401s happen only in the seconds after the issuer's abrupt signing-key change, before the\n"+
			"  rotated token reaches the file; the worker then retries with it, and no record is lost.\n")
	}
}
